# frozen_string_literal: true
# Start-up: logs, app load, gRPC server, handshake, shutdown.
require 'optparse'
require 'bridge_runner/duration'
require 'bridge_runner/log'

module BridgeRunner
  VERSION = '0.1'

  module Main
    # The transport when BRIDGE_RB_SERVER is unset: native or grpc.
    DEFAULT_SERVER = 'native'

    module_function

    # Why the environment is not one bridge starts a runner in, or nil. The
    # same checks, in the same words, in every shim (runners/CONTRACT.md,
    # "Start-up").
    def handshake_env_error(prog)
      return "#{prog} is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1" unless ENV['BRIDGE_PLUGIN'] == 'runner-v1'

      versions = ENV['PLUGIN_PROTOCOL_VERSIONS'] || ''
      if !versions.empty? && !versions.split(',').include?('1')
        return "PLUGIN_PROTOCOL_VERSIONS is #{versions}: this runner speaks protocol version 1 only"
      end
      return "PLUGIN_UNIX_SOCKET_DIR is not set: bridge names the directory for the runner's socket" if (ENV['PLUGIN_UNIX_SOCKET_DIR'] || '').empty?

      nil
    end

    # Seconds in BRIDGE_GRACE, a Go duration (30s when unset or empty).
    def grace_seconds
      text = ENV['BRIDGE_GRACE'] || ''
      text = '30s' if text.empty?
      ns = begin
        Duration.parse(text)
      rescue ArgumentError
        -1
      end
      raise ArgumentError, "BRIDGE_GRACE=#{text} is not a duration such as 30s, 1m30s or 500ms" if ns.negative?

      ns / 1e9
    end

    def run(argv)
      opts = { app: 'config.ru', threads: nil, slots: nil }
      OptionParser.new do |o|
        o.on('--app FILE') { |v| opts[:app] = v }
        o.on('--threads N', Integer) { |v| opts[:threads] = v }
        o.on('--slots N', Integer) { |v| opts[:slots] = v }
        o.on('--lint') { opts[:lint] = true }
      end.parse!(argv)
      log_io = $stderr.dup
      log_io.sync = true
      Log.io = log_io
      if (problem = handshake_env_error('bridge-rack-runner'))
        Log.error(problem)
        exit 1
      end
      sock_dir = ENV['PLUGIN_UNIX_SOCKET_DIR']
      begin
        grace = grace_seconds
      rescue ArgumentError => e
        Log.error(e.message)
        exit 1
      end
      threads = opts[:threads] || Integer(ENV['BRIDGE_THREADS'] || '1', exception: false) || 1
      threads = 1 if threads < 1
      # Slot streams bridge may keep open (--pipeline): the ones past the
      # threads hold requests that wait at the gate for an app thread.
      slots = opts[:slots] || Integer(ENV['BRIDGE_SLOTS'] || '', exception: false) || threads
      slots = threads if slots < threads
      workers = Integer(ENV['BRIDGE_WORKERS'] || '1', exception: false) || 1

      # G7: keep the real stdout for the handshake; fd 1 and $stdout become logs.
      handshake = IO.new(1).dup
      handshake.sync = true
      rd, wr = IO.pipe
      $stdout.reopen(wr)
      wr.close
      Thread.new do
        rd.each_line { |l| Log.info(l.chomp, stream: 'stdout', request_id: nil) }
      rescue StandardError
        nil
      end
      $stdout = Log::LineWriter.new('stdout')
      $stderr = Log::LineWriter.new('stderr', 'warning')

      # As Puma/Unicorn behind a proxy in production: no development error
      # pages (Sinatra's show_exceptions would put tracebacks in bodies, G2).
      ENV['RACK_ENV'] ||= 'production'
      # gRPC's poll engine, not epoll1: with epoll1 every thread that waits
      # on a completion queue (the slot threads, RpcServer's request_call
      # loop, ruby-grpc's channel-polling thread) takes turns reading the
      # socket and then wakes the slot thread; with poll the channel-polling
      # thread stays out of it. Hello, 1 slot: 5.5 -> 3.4 context switches
      # and ~175 -> ~150 us of runner CPU per request. Read when gRPC starts
      # (first Server.new, or the app's first gRPC object); unset again once
      # the server exists, so that the app's children do not inherit it.
      # BRIDGE_RB_SERVER: the gRPC transport. native (default): h2.rb on
      # protocol-http2, single-threaded; grpc: ruby-grpc's RpcServer.
      choice = ENV['BRIDGE_RB_SERVER'].to_s
      choice = DEFAULT_SERVER if choice.empty?
      Log.warning("BRIDGE_RB_SERVER=#{choice} is neither native nor grpc: using native") unless %w[native grpc].include?(choice)
      native = choice != 'grpc'
      poll_env = !native && !ENV.key?('GRPC_POLL_STRATEGY')
      ENV['GRPC_POLL_STRATEGY'] = 'poll' if poll_env
      require 'rack'
      require(native ? 'bridge_runner/native' : 'bridge_runner/server')
      rack3 = BridgeRunner.rack3?
      begin
        app = Rack::Builder.parse_file(opts[:app])
        app = app[0] if app.is_a?(Array) # Rack 2 returns [app, options]
      rescue Exception => e # rubocop:disable Lint/RescueException
        Log.error("cannot load #{opts[:app]}: #{e.class}: #{e.message}", traceback: (e.backtrace || []).join("\n"))
        exit! 1
      end

      active = 0
      # Ids of the requests in the app, cancelled ones too until the app
      # returns: Describe's `running`, which bridge polls after a cancel.
      running = []
      lock = Mutex.new
      idle = ConditionVariable.new
      tracker = lambda do |d, rid|
        lock.synchronize do
          active += d
          if d.positive?
            running << rid
          elsif (i = running.index(rid))
            running.delete_at(i) # one entry: Array#delete would drop every equal id
          end
          idle.broadcast if active.zero?
        end
      end
      sig_r, sig_w = IO.pipe
      stop = -> { sig_w.write_nonblock('x') rescue nil }
      describe = {
        language: 'ruby', language_version: RUBY_VERSION,
        interface: if rack3 && Rack::RELEASE.start_with?('2')
                     'rack/3.0' # Rack 3 semantics forced on a Rack 2 install
                   else
                     "rack/#{Rack::RELEASE.split('.')[0, 2].join('.')}"
                   end,
        # slots: bridge pipelines requests onto this runner only up to it.
        app: opts[:app], threads: threads, slots: slots, pid: Process.pid,
        server: "bridge-rack/#{VERSION} #{native ? "protocol-http2/#{Protocol::HTTP2::VERSION}" : "grpc/#{GRPC::VERSION}"} " \
                "rack/#{Rack::RELEASE}"
      }
      if native
        return run_native(opts, describe, threads: threads, slots: slots, workers: workers, rack3: rack3, app: app,
                                          grace: grace, tracker: tracker, running: -> { lock.synchronize { running.dup } },
                                          sock_dir: sock_dir, handshake: handshake)
      end
      # No gate when every stream has a thread: nothing to wait for.
      gate = Gate.new(threads) if slots > threads
      factory = lambda do
        Slot.new(app, threads: threads, workers: workers, rack3: rack3, lint: opts[:lint], tracker: tracker, gate: gate,
                      on_retire: stop) # bridge.retire: shut down as on SIGTERM
      end
      # No BDP pings: bridge fixes its windows (4 MiB stream, 16 MiB
      # connection) and a unix socket has no bandwidth-delay product to find.
      # A pool thread per stream, waiting ones included (RpcServer refuses a
      # call it has no thread for), and 4 for Describe, Health, Shutdown and
      # a replacement stream opened while a cancelled one winds down.
      server = GRPC::RpcServer.new(pool_size: slots + 4, max_waiting_requests: 1000, poll_period: 1,
                                   server_args: { 'grpc.http2.bdp_probe' => 0 })
      ENV.delete('GRPC_POLL_STRATEGY') if poll_env
      path = File.join(sock_dir, "rack-#{Process.pid}.sock")
      server.add_http2_port("unix:#{path}", :this_port_is_insecure)
      server.handle(Runner.new(factory, describe, -> { lock.synchronize { running.dup } }))
      server.handle(Health.new)
      server.handle(Controller.new(stop))
      server.handle(Stdio.new)
      th = Thread.new { server.run }
      server.wait_till_running(10)
      trap('TERM') { stop.call }
      trap('INT') { stop.call }
      # Log takes a Mutex, which trap context forbids: a thread writes.
      trap('USR1') { Thread.new { log_stacks } }
      Log.info("serving #{opts[:app]} (#{describe[:interface]}) with #{threads} thread(s), #{slots} slot(s) on #{path}",
               threads: threads, slots: slots)
      handshake.write("1|1|unix|#{path}|grpc\n")
      handshake.close

      sig_r.read(1)
      Log.info('shutting down: finishing in-flight requests')
      deadline = Time.now + grace
      lock.synchronize do
        # Requests waiting at the gate are in flight too; they do not
        # signal idle, so look again every 50 ms while there are some.
        while (active.positive? || gate&.busy?) && (left = deadline - Time.now).positive?
          idle.wait(lock, gate ? [left, 0.05].min : left)
        end
      end
      Thread.new { sleep 5; exit!(0) }
      server.stop rescue nil
      th.join(5)
      Log.info('stopped')
      exit!(0)
    end

    # The native transport (h2.rb, native.rb): serves until stopped, then
    # drains and exits.
    def run_native(opts, describe, threads:, slots:, workers:, rack3:, app:, grace:, tracker:, running:, sock_dir:,
                   handshake:)
      service = nil
      stop = -> { service.request_stop('signal') }
      factory = lambda do
        # No gate: the service hands requests to at most `threads` app
        # threads, in arrival order.
        Slot.new(app, threads: threads, workers: workers, rack3: rack3, lint: opts[:lint], tracker: tracker,
                      on_retire: -> { service.request_stop('retire') })
      end
      service = Native::Service.new(slot_factory: factory, describe: describe, running: running, threads: threads,
                                    grace: grace)
      path = service.listen(sock_dir)
      trap('TERM') { stop.call }
      trap('INT') { stop.call }
      trap('USR1') { Thread.new { log_stacks } }
      Log.info("serving #{opts[:app]} (#{describe[:interface]}) with #{threads} thread(s), #{slots} slot(s) on #{path}",
               threads: threads, slots: slots, transport: 'native')
      handshake.write("1|1|unix|#{path}|grpc\n")
      handshake.close
      begin
        service.run
      rescue StandardError => e
        Log.error("native transport failed: #{e.class}: #{e.message}", traceback: (e.backtrace || []).join("\n"),
                                                                       kind: 'internal')
        exit!(1)
      end
      Log.info('stopped')
      exit!(0)
    end

    # SIGUSR1, sent by bridge to a runner that keeps a cancelled request:
    # every thread's backtrace, one log line each, with the request id the
    # thread serves.
    def log_stacks
      Thread.list.each do |t|
        next if t == Thread.current
        Log.info('stack dump (SIGUSR1)', thread: t.name || t.inspect, request_id: t[:bridge_request_id],
                                         traceback: (t.backtrace || []).join("\n"))
      end
    end
  end
end
