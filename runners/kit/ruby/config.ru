# The conformance kit app for the Ruby (Rack) runner.
#
# `bridge conform --runner ruby:config.ru --chdir runners/kit/ruby` calls it
# to check the runner against runners/CONTRACT.md. Its routes, its counters
# (/stats) and its print at load time are specified in runners/kit/README.md;
# keep them in step with it. Plain Rack, no framework and no middleware: a
# failure must be the runner's, not a library's. It is valid under Rack 2.2
# and Rack 3 alike: Integer status, a mutable Hash of lowercase header names,
# bodies that respond to each and close.
require 'tmpdir'
require 'uri'

# Careless apps print at load time: the runner must keep this off the
# handshake pipe (it goes to the log).
puts 'KIT-IMPORT-PRINT'

module Kit
  FILE_LINE = "bridge-kit-file\n"
  FILE_LINES = 20_000 # 320,000 bytes
  TEXT = 'text/plain'
  BYTES = 'application/octet-stream'

  LOCK = Mutex.new # guards the counters: the runner may use threads
  @stats = Hash.new { |h, rid| h[rid] = { calls: 0, bodies: 0, closes: 0 } } # by request id
  @active = 0
  @max_active = 0
  @file = nil

  class << self
    def enter(rid)
      LOCK.synchronize do
        @stats[rid][:calls] += 1
        @active += 1
        @max_active = @active if @active > @max_active
      end
    end

    def leave
      LOCK.synchronize { @active -= 1 }
    end

    def opened(rid)
      LOCK.synchronize { @stats[rid][:bodies] += 1 }
    end

    # Counts a close; the call it answers stays active until its first close.
    def closed(rid, first)
      LOCK.synchronize do
        @stats[rid][:closes] += 1
        @active -= 1 if first
      end
    end

    def stats_json(rid, reset)
      LOCK.synchronize do
        s = @stats.fetch(rid, { calls: 0, bodies: 0, closes: 0 })
        out = %({"calls":#{s[:calls]},"bodies":#{s[:bodies]},"closes":#{s[:closes]},"max_active":#{@max_active}})
        @max_active = 0 if reset
        out
      end
    end

    # The file /file serves, created once per process.
    def file
      LOCK.synchronize do
        @file ||= File.join(Dir.tmpdir, "bridge-kit-#{Process.pid}.txt").tap do |path|
          File.binwrite(path, FILE_LINE * FILE_LINES)
          at_exit { File.unlink(path) if File.exist?(path) } # not one temp file per run left behind
        end
      end
    end
  end

  # A response body: yields what the block yields (run as the runner asks
  # for the chunks), with a counted close.
  class Body
    def initialize(rid, &chunks)
      @rid = rid
      @chunks = chunks
      @closed = false
      Kit.opened(rid)
    end

    def each(&out)
      @chunks.call(out)
    end

    def close
      first = !@closed
      @closed = true
      Kit.closed(@rid, first)
    end
  end

  # The /file body: the file, opened and positioned at `skip`. Read from
  # there by each; with to_path (the runner may send the file itself) only
  # when it is the whole file, since to_path must name exactly what each
  # yields (Rack SPEC).
  class FileBody < Body
    def initialize(rid, path, skip)
      @io = File.open(path, 'rb')
      @io.seek(skip)
      super(rid) do |out|
        while (buf = @io.read(65_536))
          out.call(buf)
        end
      end
    end

    def size = @io.size - @io.pos

    def close
      @io.close
    ensure
      super
    end
  end

  class WholeFile < FileBody
    def initialize(rid, path)
      super(rid, path, 0)
      @path = path
    end

    def to_path = @path
  end

  def self.num(q, name, default = 0)
    v = q[name].to_s
    v.match?(/\A\d+\z/) ? v.to_i : default
  end

  def self.sleep_ms(ms)
    sleep(ms / 1000.0) if ms.positive?
  end

  def self.call(env)
    rid = env['bridge.request_id'].to_s
    enter(rid)
    begin
      route(env, rid)
    rescue Exception # rubocop:disable Lint/RescueException
      leave # a call that raises is active until it raises
      raise
    end
  end

  def self.route(env, rid)
    path = env['PATH_INFO'].to_s
    post = env['REQUEST_METHOD'] == 'POST'
    q = {}
    env['QUERY_STRING'].to_s.split('&').each do |pair|
      k, v = pair.split('=', 2).map { |s| URI.decode_www_form_component(s.to_s) }
      q[k] = v unless q.key?(k)
    end
    text = { 'content-type' => TEXT }

    case path
    when '/hello'
      # A plain Array: the runner can tell it is one chunk (C7).
      leave
      [200, text, ['hello']]
    when '/echo', '/echo-stream'
      return not_found(rid) unless post
      size = num(q, 'read', 65_536)
      size = 65_536 if size.zero?
      input = env['rack.input']
      read = lambda do
        piece = input&.read(size)
        piece unless piece.nil? || piece.empty?
      end
      if path == '/echo-stream'
        return [200, { 'content-type' => BYTES }, Body.new(rid) { |out| while (p = read.call) do out.call(p) end }]
      end
      pieces = []
      while (p = read.call)
        pieces << p
      end
      [200, { 'content-type' => BYTES }, Body.new(rid) { |out| pieces.each { |p| out.call(p) } }]
    when '/stream'
      n = num(q, 'n')
      ms = num(q, 'ms')
      body = Body.new(rid) do |out|
        i = 1
        while n.zero? || i <= n
          sleep_ms(ms) if i > 1
          out.call("chunk-#{i}\n")
          i += 1
        end
      end
      [200, text.merge('x-accel-buffering' => 'no'), body]
    when '/sleep'
      sleep_ms(num(q, 'ms'))
      [200, text, Body.new(rid) { |out| out.call('slept') }]
    when '/deferred'
      ms = num(q, 'ms')
      [200, text, Body.new(rid) { |out| out.call(''); sleep_ms(ms); out.call('late') }]
    when '/error-call'
      raise 'KIT-SECRET error-call'
    when '/error-before', '/error-after'
      first = path == '/error-before' ? '' : 'partial'
      [200, text, Body.new(rid) { |out| out.call(first); raise "KIT-SECRET #{path[1..]}" }]
    when '/file'
      skip = num(q, 'skip')
      body = skip.zero? ? WholeFile.new(rid, file) : FileBody.new(rid, file, skip)
      [200, { 'content-type' => BYTES, 'content-length' => body.size.to_s }, body]
    when '/print'
      puts 'KIT-STDOUT'
      [200, text, Body.new(rid) { |out| out.call('printed') }]
    when '/retire'
      env['bridge.retire'].call
      [200, text, Body.new(rid) { |out| out.call('bye') }]
    when '/stats'
      json = stats_json(q['id'].to_s, q['reset'] == '1')
      [200, { 'content-type' => 'application/json' }, Body.new(rid) { |out| out.call(json) }]
    else
      not_found(rid)
    end
  end

  def self.not_found(rid)
    [404, { 'content-type' => TEXT }, Body.new(rid) { |out| out.call('not found') }]
  end
end

run Kit
