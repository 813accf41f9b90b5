# frozen_string_literal: true
# One Slot stream: requests one after another, each answered through the app.
require 'stringio'
require 'tempfile'
require 'uri' # Rack::Lint 2.2 uses URI without requiring it
require 'rack'
require 'bridge_runner/log'
require 'bridge_runner/input'
require 'bridge_runner/wire'

module BridgeRunner
  # Raised by a transport to an app thread that reads from or writes to a
  # stream that is gone (cancelled, connection lost).
  class StreamGone < IOError; end

  class AppError < StandardError
    attr_reader :kind

    def initialize(msg, kind = 'protocol')
      super(msg)
      @kind = kind
    end
  end

  # Rack 3 mode when Rack::RELEASE >= 3 or BRIDGE_RACK_SPEC=3 (R1).
  def self.rack3?
    spec = ENV['BRIDGE_RACK_SPEC']
    return spec.start_with?('3') if spec && !spec.empty?
    Gem::Version.new(Rack::RELEASE) >= Gem::Version.new('3')
  end

  class Slot
    W = Wire
    TOKEN = /\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\z/.freeze
    BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/n.freeze
    DIGITS = /\A\d+\z/n.freeze
    PROTOCOL = %r{\AHTTP/\d(\.\d)?\z}n.freeze
    HOP = %w[connection keep-alive transfer-encoding proxy-connection upgrade te trailer].to_h { |h| [h, true] }.freeze
    NO_BODY_STATUS = { 204 => true, 304 => true }.freeze
    LOGGER = Log::RackLogger.new
    NONE = [].freeze
    # Response header names seen, lowercased (bounded: names are the app's).
    LOWER_MAX = 512

    attr_reader :app

    # opts: :threads, :workers, :rack3, :lint; tracker: called with 1 and
    # the request id as a request enters the app, -1 as it leaves;
    # on_retire: called once an app's env['bridge.retire'] response is out.
    def initialize(app, threads: 1, workers: 1, rack3: BridgeRunner.rack3?, lint: false, tracker: nil, on_retire: nil)
      @app = lint ? Rack::Lint.new(app) : app
      @on_retire = on_retire
      @retiring = false
      @threads = threads
      @workers = workers
      @rack3 = rack3
      @tracker = tracker
      @lower = {}
      # The env keys that are the same for every request of this slot; each
      # request's env starts as a copy of it.
      @errors = Log::LineWriter.new('errors', 'warning')
      @base = {
        'rack.errors' => @errors,
        'rack.logger' => LOGGER,
        'rack.multithread' => threads > 1,
        'rack.multiprocess' => workers > 1,
        'rack.run_once' => false,
        # The app asks for this runner to exit after the response: its end
        # frame carries retire (CONTRACT "Slots"), then the process drains
        # and exits 0 as on SIGTERM.
        'bridge.retire' => -> { @retiring = true; nil }
      }
      unless rack3
        @base['rack.version'] = Rack::VERSION
        @base['rack.hijack?'] = false
      end
      @base.freeze
    end

    # Serves a whole stream, request after request (the tests and
    # bench/hotpath.rb drive a Slot this way). reqs: something with #next
    # (raises StopIteration at end of stream) giving Wire::Requests. Yields
    # encoded ResponseFrames (Wire::Bytes), and true with a response's last
    # frame (the one with end). Returns when the stream ends or the app
    # asked to retire.
    def run(reqs, &out)
      loop do
        frame = begin
          reqs.next
        rescue StopIteration
          return
        end
        next unless frame.head # stray body/end frames of a finished request
        return unless handle(frame, reqs, &out)
      end
    end

    # One request: frame is its first RequestFrame (with a head), reqs
    # gives the following ones. A reqs that responds to flush (the native
    # transport's SlotStream) may hold a response's last frame; flush sends
    # it now. Returns false if the app asked to retire (nothing more on this
    # stream). Raises what the transport raises for a stream that went away.
    def handle(frame, reqs, &out)
      @flusher = reqs.respond_to?(:flush) ? reqs : nil
      rid = frame.head.request_id
      @tracker&.call(1, rid)
      begin
        catch(:stream_ended) { serve_one(frame, reqs, &out) }
        flush_quietly if @retiring
      ensure
        @tracker&.call(-1, rid)
        retired(rid) if @retiring
      end
      !@retiring
    end

    def flush_quietly
      @flusher&.flush
    rescue StandardError
      nil # the stream went away: nothing more can be sent
    end

    def retired(rid)
      Log.info('bridge.retire: the worker exits after this request', request_id: rid)
      @on_retire&.call
    end

    def serve_one(first, reqs, &out)
      head = first.head
      Thread.current[:bridge_request_id] = head.request_id
      input = nil
      begin
        input = Input.new(first, reqs, head.content_length)
        env = build_env(head, input)
      rescue StandardError => e
        Log.error("cannot prepare the request: #{e.class}: #{e.message}", traceback: (e.backtrace || []).join("\n"))
        out.call(W.response(error: ['internal', "#{e.class}: #{e.message}"], fin: true), true)
        input&.drain
        return
      end
      respond(env, &out)
      input.drain
    rescue StopIteration
      Log.info('request stream ended before the request body end')
      throw :stream_ended
    ensure
      $stdout.flush if $stdout.is_a?(Log::LineWriter)
      $stderr.flush if $stderr.is_a?(Log::LineWriter)
      input&.dispose
      Thread.current[:bridge_request_id] = nil
    end

    def build_env(head, input)
      env = @base.dup
      vars = head.vars
      i = 0
      n = vars.size
      while i < n
        # Names become frozen, deduplicated UTF-8 Strings (binary when not
        # valid UTF-8), so Hash#[]= does not copy them and they are the same
        # objects as the app's literal keys.
        name = vars[i].force_encoding(Encoding::UTF_8)
        name.force_encoding(Encoding::BINARY) unless name.valid_encoding?
        env[-name] = vars[i + 1]
        i += 2
      end
      env.delete('HTTP_CONTENT_TYPE')
      env.delete('HTTP_CONTENT_LENGTH')
      env.delete('CONTENT_LENGTH') if (cl = env['CONTENT_LENGTH']) && !DIGITS.match?(cl)
      env.delete('CONTENT_TYPE') if env['CONTENT_TYPE'] == ''
      env['QUERY_STRING'] ||= ''.b
      sn = env['SCRIPT_NAME']
      if sn.nil? || sn == '/'
        env['SCRIPT_NAME'] = sn = ''.b
      end
      env['PATH_INFO'] ||= ''.b
      # R5: always set and well-formed, whatever the front sent.
      env['SERVER_PROTOCOL'] = 'HTTP/1.1'.b unless PROTOCOL.match?(env['SERVER_PROTOCOL'])
      # R4: PATH_INFO is the raw path from REQUEST_URI.
      if (uri = env['REQUEST_URI']) && uri.start_with?('/')
        q = uri.index('?') # vars are binary: a byte index
        raw = uri.byteslice(0, q || uri.bytesize)
        if sn.empty?
          env['PATH_INFO'] = raw
        elsif raw.start_with?(sn) && (raw.bytesize == sn.bytesize || raw.getbyte(sn.bytesize) == 47)
          env['PATH_INFO'] = raw.byteslice(sn.bytesize..-1)
        end
      end
      env['PATH_INFO'] = '/'.b if sn.empty? && env['PATH_INFO'].empty?
      if @rack3
        env.delete('HTTP_VERSION') if env['HTTP_VERSION'] && env['HTTP_VERSION'] != env['SERVER_PROTOCOL']
        env['rack.response_finished'] = []
      end
      # R8: in 3.x the app may close rack.input; Input#close is a no-op.
      env['rack.input'] = input
      env['rack.url_scheme'] = head.url_scheme == 'https' ? 'https' : 'http'
      env['bridge.request_id'] = head.request_id
      env
    end

    # Calls the app and sends its response. Never raises for app errors.
    def respond(env, &out)
      @head_sent = false
      @closed = false
      @body = nil
      finished_error = nil
      status = headers = nil
      completed = false
      begin
        res = @app.call(env)
        unless res.is_a?(Array) && res.size == 3
          raise AppError, "app returned #{res.class}, not a 3-element Array (R16)"
        end
        raise AppError, 'response Array is frozen (R16)' if @rack3 && res.frozen?
        @body = res[2]
        headers = res[1]
        status = check_status(res[0])
        wire_headers, clen = check_headers(headers, status)
        head = W.head(status, Rack::Utils::HTTP_STATUS_CODES[status] || '', wire_headers)
        send_body(env, head, status, clen, &out)
        completed = true
      rescue Exception => e # rubocop:disable Lint/RescueException
        finished_error = e
        if cancelled?(e)
          Log.info("request cancelled (client gone): #{e.class}: #{e.message}")
          raise
        end
        raise if e.is_a?(SignalException) || e.is_a?(SystemExit)
        kind = e.is_a?(AppError) ? e.kind : 'app'
        Log.error("app error: #{e.class}: #{e.message}", traceback: (e.backtrace || []).join("\n"))
        out.call(W.response(error: [kind, "#{e.class}: #{e.message}"[0, 4096], (e.backtrace || []).join("\n")[0, 65_536]],
                            fin: true, retire: @retiring, abort: @head_sent), true)
        completed = true
      ensure
        unless completed || finished_error
          # The stream went away mid-response (client gone, G4).
          Log.info('request cancelled (client gone)')
          finished_error = IOError.new('client disconnected')
        end
        # The client gets the response before the app's after-response
        # work (body.close: Rack::BodyProxy callbacks, Rails' executor;
        # rack.response_finished), as with Puma.
        if completed && (e = flush_before_close(env))
          finished_error = e
        end
        close_body
        @body = nil
        @errors.flush
        run_finished(env, status, headers, finished_error)
      end
    end

    # Sends a held last frame if the app has work to do after the response.
    # Returns the error if the stream went away meanwhile.
    def flush_before_close(env)
      return nil unless @flusher
      fin = env['rack.response_finished']
      return nil unless (!@closed && @body.respond_to?(:close)) || (fin.is_a?(Array) && !fin.empty?)
      @flusher.flush
      nil
    rescue StandardError => e
      Log.info("request cancelled (client gone): #{e.class}: #{e.message}")
      e
    end

    def cancelled?(e) = e.is_a?(StreamGone)

    def run_finished(env, status, headers, error)
      list = env['rack.response_finished']
      return unless list.is_a?(Array)
      list.reverse_each do |cb|
        cb.call(env, status, headers, error)
      rescue StandardError => e
        Log.error("rack.response_finished callable failed: #{e.class}: #{e.message}")
      end
    end

    def close_body
      return if @closed
      @closed = true
      b = @body
      b.close if b.respond_to?(:close)
    rescue StandardError => e
      Log.error("body close failed: #{e.class}: #{e.message}")
    end

    # Returns the status code.
    def check_status(s)
      if @rack3
        raise AppError, "status #{s.inspect} is not an Integer (R17)" unless s.is_a?(Integer)
        code = s
      else
        raise AppError, "status #{s.inspect} has no to_i (R17)" unless s.respond_to?(:to_i)
        code = s.to_i
      end
      raise AppError, "status #{code} out of range 200..999 (G10)" unless code >= 200 && code <= 999
      code
    end

    def lower(k)
      l = @lower[k]
      return l if l
      @lower.clear if @lower.size >= LOWER_MAX
      @lower[k] = -k.downcase
    end

    # Returns [flat Array of header name, value, ..., content_length or nil].
    def check_headers(h, status)
      raise AppError, 'headers do not respond to each (R18)' unless h.respond_to?(:each)
      if @rack3 && !h.is_a?(Hash)
        raise AppError, "headers are a #{h.class}, not a Hash (R19)"
      end
      raise AppError, 'headers Hash is frozen (R19)' if @rack3 && h.frozen?
      list = []
      clen = nil
      h.each do |k, v|
        raise AppError, "header name #{k.inspect} is not a String" unless k.is_a?(String)
        lk = lower(k)
        if lk.start_with?('rack.')
          raise AppError, 'rack.hijack response header: hijacking is not supported (R11)' if lk == 'rack.hijack'
          Log.warning("response header #{k} is not sent (R13/R20)") if lk == 'rack.protocol'
          next
        end
        raise AppError, "header name #{k.inspect} is not a token (G11)" unless k.ascii_only? && TOKEN.match?(k)
        raise AppError, 'Status header is forbidden (R18)' if lk == 'status'
        raise AppError, "header #{k} has uppercase letters in Rack 3 (R19)" if @rack3 && !k.equal?(lk) && k != lk
        if @rack3 && v.is_a?(Array)
          v.each do |x|
            raise AppError, "header #{k} value #{x.inspect} is not a String (R19)" unless x.is_a?(String)
            raise AppError, "header #{k} value has a newline (R19)" if x.include?("\n")
          end
          values = v
        else
          raise AppError, "header #{k} value #{v.inspect} is not a String (R18)" unless v.is_a?(String)
          if v.empty?
            values = NONE # no line: the header is not sent (as v.split("\n"))
          elsif v.include?("\n")
            Log.warning("header #{k} value holds \"\\n\"; split into lines (R19)") if @rack3
            values = v.b.split("\n", -1)
          end
        end
        if HOP[lk]
          Log.warning("hop-by-hop response header #{k} stripped (G12)")
          next
        end
        if NO_BODY_STATUS[status] && (lk == 'content-length' || lk == 'content-type')
          Log.debug("#{k} stripped from a #{status} response (G14)")
          next
        end
        if values
          values.each { |val| clen = add_header(list, k, lk, val, clen) }
          values = nil
        else
          clen = add_header(list, k, lk, v, clen)
        end
      end
      clen = clen.to_i if clen
      [list, clen]
    end

    def add_header(list, k, lk, val, clen)
      bad = val.ascii_only? ? BAD_VALUE.match?(val) : BAD_VALUE.match?(val.b)
      raise AppError, "header #{k} value has a control character (G11)" if bad
      if lk == 'content-length'
        # G13: one value, digits only (repeated identical values are one).
        raise AppError, "invalid Content-Length #{val.inspect} (G13)" unless val.ascii_only? && DIGITS.match?(val)
        raise AppError, "invalid Content-Length #{[clen, val].inspect} (G13)" if clen && clen != val
        clen = val
      end
      list << k << val
      clen
    end

    def send_body(env, head, status, clen, &out)
      body = @body
      no_body = env['REQUEST_METHOD'] == 'HEAD' || status == 204 || status == 304
      if !@rack3 && body.is_a?(String)
        raise AppError, 'body is a String, not an each-able object (R22)'
      end
      if @rack3 && !body.respond_to?(:each) && body.respond_to?(:call)
        return stream_body(env, head, no_body, &out)
      end
      if body.is_a?(Array)
        # The common case first: nothing else to ask an Array.
      elsif !(body.respond_to?(:each) || body.respond_to?(:to_ary) || body.respond_to?(:to_path))
        raise AppError, "body #{body.class} responds neither to each nor to call (R22/R23)"
      end
      if no_body
        @head_sent = true
        out.call(W.response(head: head, fin: true, retire: @retiring), true)
        return
      end
      if !body.is_a?(Array) && body.respond_to?(:to_path) && (path = body.to_path) && File.file?(path) &&
         File.readable?(path) && (clen.nil? || File.size(path) == clen) &&
         (path = File.expand_path(path)).dup.force_encoding(Encoding::UTF_8).valid_encoding?
        @head_sent = true
        out.call(W.response(head: head, file: [path, 0, -1], fin: true, retire: @retiring), true)
        return
      end
      remaining = clen
      if body.is_a?(Array) || (body.respond_to?(:to_ary) && @rack3)
        ary = body.to_ary
        @closed = true if @rack3 && !body.is_a?(Array) # to_ary closed it (R23)
        ary.each do |c|
          raise AppError, "body chunk #{c.class} is not a String (R25)" unless c.is_a?(String)
        end
        # One chunk (the usual [body]) goes as it is: Wire copies it once.
        if ary.size == 1
          buf = ary[0]
        else
          buf = String.new(encoding: Encoding::BINARY)
          ary.each { |c| buf << (c.ascii_only? ? c : c.b) }
        end
        abort = false
        if remaining
          if buf.bytesize > remaining
            Log.warning("body longer than Content-Length #{remaining}: truncated (G13)")
            buf = buf.byteslice(0, remaining)
          elsif buf.bytesize < remaining
            abort = true
          end
        end
        @head_sent = true
        out.call(W.response(head: head, body: buf, fin: true, retire: @retiring, abort: abort), true)
        return
      end
      short = false
      body.each do |c|
        raise AppError, "body chunk #{c.class} is not a String (R25)" unless c.is_a?(String)
        next if c.empty?
        if remaining
          if c.bytesize > remaining
            Log.warning("body longer than Content-Length #{clen}: truncated (G13)")
            c = c.byteslice(0, remaining)
            short = true
          end
          remaining -= c.bytesize
        end
        unless c.empty?
          h = @head_sent ? nil : head
          @head_sent = true
          out.call(W.response(head: h, body: c))
        end
        break if short
      end
      h = @head_sent ? nil : head
      @head_sent = true
      out.call(W.response(head: h, fin: true, retire: @retiring, abort: !remaining.nil? && remaining > 0), true)
    end

    # Rack 3 streaming body (R24): head first, then call(stream).
    def stream_body(env, head, no_body, &out)
      out.call(W.response(head: head))
      @head_sent = true
      stream = Stream.new(env['rack.input'], no_body, out)
      @body.call(stream)
      out.call(W.response(fin: true, retire: @retiring), true)
    end

    class Stream
      def initialize(input, no_body, out)
        @input = input
        @no_body = no_body
        @out = out
        @closed = false
      end

      def read(*a) = @input.read(*a)

      def write(s)
        raise Errno::EPIPE if @closed
        s = s.to_s
        @out.call(Wire.response(body: s)) unless s.empty? || @no_body
        s.bytesize
      rescue StandardError => e
        raise if e.is_a?(Errno::EPIPE)
        @closed = true
        raise Errno::EPIPE
      end

      def <<(s)
        write(s)
        self
      end

      def flush = self
      def close = (@closed = true) && nil
      def close_read = nil
      def close_write = (@closed = true) && nil
      def closed? = @closed
    end
  end
end
