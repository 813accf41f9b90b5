# frozen_string_literal: true
# Start-up: logs, app load, gRPC server, handshake, shutdown.
require 'optparse'
require 'bridge_runner/duration'
require 'bridge_runner/log'

module BridgeRunner
  VERSION = '0.1'

  module Main
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
      # BRIDGE_RB_SERVER chose the gRPC server while ruby-grpc's RpcServer
      # was the other one; it won no measured case and is gone (README,
      # "Per-request cost"). Only the native transport is left.
      unless (choice = ENV['BRIDGE_RB_SERVER'].to_s).empty? || choice == 'native'
        Log.error("BRIDGE_RB_SERVER=#{choice}: want native (ruby-grpc's server was removed)")
        exit 1
      end
      threads = opts[:threads] || Integer(ENV['BRIDGE_THREADS'] || '1', exception: false) || 1
      threads = 1 if threads < 1
      # Slot streams bridge may keep open (--pipeline): the ones past the
      # threads hold requests that wait in their stream's inbox for an app
      # thread.
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
      require 'rack'
      require 'bridge_runner/native'
      rack3 = BridgeRunner.rack3?
      begin
        app = Rack::Builder.parse_file(opts[:app])
        app = app[0] if app.is_a?(Array) # Rack 2 returns [app, options]
      rescue Exception => e # rubocop:disable Lint/RescueException
        Log.error("cannot load #{opts[:app]}: #{e.class}: #{e.message}", traceback: (e.backtrace || []).join("\n"))
        exit! 1
      end

      # Ids of the requests in the app, cancelled ones too until the app
      # returns: Describe's `running`, which bridge polls after a cancel.
      running = []
      lock = Mutex.new
      tracker = lambda do |d, rid|
        lock.synchronize do
          if d.positive?
            running << rid
          elsif (i = running.index(rid))
            running.delete_at(i) # one entry: Array#delete would drop every equal id
          end
        end
      end
      describe = {
        language: 'ruby', language_version: RUBY_VERSION,
        interface: if rack3 && Rack::RELEASE.start_with?('2')
                     'rack/3.0' # Rack 3 semantics forced on a Rack 2 install
                   else
                     "rack/#{Rack::RELEASE.split('.')[0, 2].join('.')}"
                   end,
        # slots: bridge pipelines requests onto this runner only up to it.
        app: opts[:app], threads: threads, slots: slots, pid: Process.pid,
        server: "bridge-rack/#{VERSION} protocol-http2/#{Protocol::HTTP2::VERSION} rack/#{Rack::RELEASE}"
      }
      run_native(opts, describe, threads: threads, slots: slots, workers: workers, rack3: rack3, app: app,
                 grace: grace, tracker: tracker, running: -> { lock.synchronize { running.dup } },
                 sock_dir: sock_dir, handshake: handshake)
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
