# frozen_string_literal: true
# A small gRPC server: HTTP/2 with prior knowledge (h2c) over a unix socket,
# on Debian's protocol-http2 (0.14) for everything but the hot path, pumped
# by its caller (the slot loop), no threads of its own. The Perl shim's
# Bridge::Runner::GRPC is the model.
#
# protocol-http2 reads the connection preface, SETTINGS, HEADERS (HPACK),
# PING, GOAWAY, RST_STREAM, WINDOW_UPDATE and any unusual DATA. A plain DATA
# frame (no END_STREAM, no padding) on an open stream that has a call, the
# frame a busy Slot stream receives once per request, is taken here without
# the library's Frame objects and calls, with its flow-control bookkeeping
# done on the library's own Window objects. DATA the runner sends is framed
# here too, and consumes the library's send windows, so that the two never
# disagree. Only whole frames are handed to the library, through an
# in-memory IO over the read buffer; what it writes is appended to the
# connection's output buffer, in order with our own frames.
#
# Receive flow control: the connection window is acknowledged as frames
# arrive (as the library does); a stream's window only as its messages are
# consumed (Call#consumed), so a Slot whose app does not read its body
# holds Go back (C11).
#
# Locking: every state change happens under the server's @lock (a Mutex);
# only one thread reads the sockets at a time (@pump_lock). With one app
# thread the app's thread pumps itself; with more, an I/O thread pumps and
# the app threads wait on condition variables (#await).
require 'socket'
require 'protocol/http2/server'
require 'protocol/http2/stream'
require 'protocol/http2/version'
require 'bridge_runner/log'
require 'bridge_runner/slot'

module BridgeRunner
  module H2
    HTTP2 = Protocol::HTTP2
    DATA = 0
    HEADERS = 1
    PUSH_PROMISE = 5
    CONTINUATION = 9
    END_STREAM = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PREFACE = HTTP2::CONNECTION_PREFACE_MAGIC
    HEADER = 'CnCCN'
    MSG_PREFIX = 'CN'
    READ_SIZE = 1 << 18
    # Our receive windows: 1 MiB per stream (a 256 KiB request body chunk
    # does not wait for a WINDOW_UPDATE), 16 MiB for the connection.
    STREAM_WINDOW = 1 << 20
    CONN_WINDOW = 16 << 20
    MAX_STREAMS = 1000

    # gRPC status codes used here.
    OK = 0
    INTERNAL = 13
    UNIMPLEMENTED = 12

    StreamGone = BridgeRunner::StreamGone

    # The library's IO: reads from a window of the read buffer, writes to
    # the connection's output buffer.
    class BufIO
      attr_accessor :buf, :pos, :limit

      def initialize(out)
        @out = out
        @buf = nil
        @pos = 0
        @limit = 0
      end

      def read(n)
        raise EOFError, 'short frame' if @pos + n > @limit
        # unpack copies; a byteslice to the end would share the read buffer.
        s = @pos + n == @buf.bytesize ? @buf.unpack1('a*', offset: @pos) : @buf.byteslice(@pos, n)
        @pos += n
        s
      end

      def write(s)
        @out << s
        s.bytesize
      end

      def flush = nil
      def close = nil
      def closed? = false
    end

    # A library stream that reports to its Call.
    class Stream < HTTP2::Stream
      attr_accessor :call

      # The library ignores what process_headers returns: hand it to the call.
      def process_headers(frame)
        headers = super
        @call&.on_headers(headers)
        headers
      end

      def receive_headers(frame)
        super
        @call&.on_half_close if @state == :half_closed_remote || (@state == :closed && frame.end_stream?)
      end

      def process_data(frame)
        data = frame.unpack
        # Padding counts against the window but is never consumed by a
        # reader: give it back at once.
        pad = frame.length - data.bytesize
        consumed(pad) if pad.positive?
        @call&.on_data(data)
        data
      end

      def receive_data(frame)
        super
        @call&.on_half_close if frame.end_stream?
      end

      # Stream windows are acknowledged as messages are consumed, not as
      # frames arrive (see #consumed).
      def request_window_update; end

      def closed(error = nil)
        @call&.on_closed(error)
      end

      # n more bytes of this stream's DATA were consumed by their reader.
      def consumed(n)
        @consumed = (@consumed || 0) + n
        w = @local_window
        cap = w.capacity
        return unless @consumed >= (cap >> 2) || w.available < (cap >> 1)
        send_window_update(@consumed) if @state == :open || @state == :half_closed_local
        @consumed = 0
      end
    end

    # The library's server connection, making our Streams.
    class Connection < HTTP2::Server
      attr_accessor :on_stream

      def create_stream(id = next_stream_id)
        s = Stream.create(self, id)
        @on_stream&.call(s)
        s
      end

      # The peer's limit is for the streams we would open (gRPC clients
      # send 0); 0.14 takes the smaller of both for the peer's streams.
      def maximum_concurrent_streams
        @local_settings.maximum_concurrent_streams
      end

      def update_local_settings(changes)
        super
        @local_window.desired = CONN_WINDOW
      end
    end

    # One gRPC call (an HTTP/2 stream). The handler is the route's object:
    # it gets message(call, bytes, size), half_close(call) and
    # closed(call); unary routes are handled by Server.
    class Call
      attr_reader :conn, :stream, :sid, :path, :queue
      attr_accessor :handler, :half_closed, :closed, :ended, :messages, :cv

      def initialize(conn, stream)
        @conn = conn
        @stream = stream
        @sid = stream.id
        @path = nil
        @handler = nil
        @partial = nil
        @messages = nil # unary: the request
        @half_closed = false
        @closed = false
        @ended = false
        @headers_sent = false
        @queue = nil # DATA frames' payloads waiting for send window
        @qoff = 0 # bytes of @queue[0] already sent
        @trailers = nil
        @cv = nil
      end

      def on_headers(headers)
        return if @path # request trailers: none in gRPC
        headers.each do |k, v|
          if k == ':path'
            @path = v
            break
          end
        end
        @path ||= ''
        @conn.server.route(self)
      end

      # DATA for this call (fast path or the library's).
      def on_data(data)
        n = data.bytesize
        if @partial.nil? && n >= 5
          c, len = data.unpack(MSG_PREFIX)
          if c.zero? && n == 5 + len
            deliver(data.byteslice(5, len), n)
            return
          end
        end
        return if n.zero?
        @partial = @partial ? (@partial << data) : data.dup
        while (p = @partial) && p.bytesize >= 5
          c, len = p.unpack(MSG_PREFIX)
          break if p.bytesize < 5 + len
          msg = p.byteslice(5, len)
          @partial = p.bytesize == 5 + len ? nil : p.byteslice(5 + len, p.bytesize)
          if c != 0
            # We advertise no grpc-accept-encoding: a client bug.
            reset(HTTP2::Error::PROTOCOL_ERROR)
            return
          end
          deliver(msg, 5 + len)
        end
      end

      def deliver(msg, size)
        if @handler
          @handler.message(self, msg, size)
        else
          (@messages ||= []) << msg
          @stream.consumed(size)
        end
      end

      def on_half_close
        return if @half_closed
        @half_closed = true
        if @handler
          @handler.half_close(self)
        else
          @conn.server.unary(self)
        end
        try_trailers
      end

      def on_closed(_error)
        return if @closed
        @closed = true
        @queue = nil
        @qoff = 0
        @trailers = nil
        @conn.calls.delete(@sid)
        @conn.server.changed!
        @handler&.closed(self) unless @ended
      end

      # Messages consumed by their reader (Slot): acknowledged to the peer.
      def consumed(n)
        @stream.consumed(n) unless @closed || @half_closed
      end

      def blocked? = !@queue.nil?

      # Queues one gRPC message (the response headers go first) and writes
      # what the windows allow into the connection's buffer. Under the lock.
      def send_message(bytes)
        return false if @closed || @ended || @trailers
        send_headers unless @headers_sent
        n = bytes.bytesize
        conn = @conn
        h2 = conn.h2
        max = h2.maximum_frame_size
        if @queue.nil? && n + 5 <= max && n + 5 <= h2.remote_window.available &&
           n + 5 <= @stream.remote_window.available
          # The usual case: one DATA frame the windows allow.
          l = n + 5
          h2.remote_window.consume(l)
          @stream.remote_window.consume(l)
          conn.out << [l >> 16, l & 0xffff, DATA, 0, @sid, 0, n].pack('CnCCNCN') << bytes
          return true
        end
        payload = String.new(capacity: n + 5)
        payload << [0, n].pack(MSG_PREFIX) << bytes
        (@queue ||= []) << payload
        drain
        true
      end

      # Sends queued DATA as far as the windows allow.
      def drain
        q = @queue or return
        h2 = @conn.h2
        max = h2.maximum_frame_size
        out = @conn.out
        until q.empty?
          room = [h2.remote_window.available, @stream.remote_window.available, max].min
          break if room <= 0
          payload = q[0]
          off = @qoff
          rest = payload.bytesize - off
          if rest <= room
            q.shift
            chunk = off.zero? ? payload : payload.byteslice(off, rest)
            @qoff = 0
          else
            # Sliced at an offset: the rest of a large message is not
            # copied for every frame.
            chunk = payload.byteslice(off, room)
            @qoff = off + room
          end
          l = chunk.bytesize
          h2.remote_window.consume(l)
          @stream.remote_window.consume(l)
          out << [l >> 16, l & 0xffff, DATA, 0, @sid].pack(HEADER) << chunk
          # Copied into the output buffer: free the slice and, once sent,
          # the message now, not at the next GC (a 64 KiB body would make
          # 128 KiB of garbage per response, and the runner's RSS grew to
          # ~120 MiB before a GC caught up).
          chunk.clear
          payload.clear if @qoff.zero?
        end
        return unless q.empty?
        @queue = nil
        try_trailers
      end

      def send_headers
        @headers_sent = true
        @stream.send_headers(nil, [[':status', '200'], ['content-type', 'application/grpc']])
      end

      # Ends the call with grpc-status status once the client has
      # half-closed and all DATA has left. Under the lock.
      def finish(status, message = nil)
        return if @closed || @ended || @trailers
        t = [['grpc-status', status.to_s]]
        t << ['grpc-message', percent(message)] if message && !message.empty?
        @trailers = t
        try_trailers
      end

      def try_trailers
        t = @trailers or return
        return if @closed || @ended || !@half_closed || @queue
        @trailers = nil
        @ended = true
        h = @headers_sent ? t : [[':status', '200'], ['content-type', 'application/grpc'], *t]
        @stream.send_headers(nil, h, END_STREAM)
      end

      # Resets the stream; the call counts as cancelled.
      def reset(code = HTTP2::Error::CANCEL)
        return if @closed
        @stream.send_reset_stream(code)
      rescue HTTP2::ProtocolError
        on_closed(nil)
      end

      def percent(s)
        s.b.gsub(/[^\x20-\x24\x26-\x7e]/n) { |c| format('%%%02X', c.ord) }
      end
    end

    # A client connection.
    class Conn
      attr_reader :sock, :h2, :calls, :server, :fast_frames
      attr_accessor :out, :dead

      def initialize(server, sock, settings)
        @server = server
        @sock = sock
        @in = String.new(capacity: READ_SIZE)
        @out = String.new
        @io = BufIO.new(@out)
        @h2 = Connection.new(HTTP2::Framer.new(@io))
        @h2.on_stream = ->(s) { new_stream(s) }
        @calls = {}
        @settings = settings
        @preface = false
        @dead = false
        @fast_frames = 0 # DATA frames taken by the fast path (tests)
      end

      def new_stream(s)
        call = Call.new(self, s)
        s.call = call
        @calls[s.id] = call
      end

      # Takes in bytes read from the socket. Returns false once the
      # connection must be closed (protocol error, GOAWAY).
      def input(data)
        if @preface
          if @in.empty?
            # The usual case: frames straight from the read buffer; only a
            # partial frame at its end is kept.
            off = frames(data)
            @in << data.unpack1('a*', offset: off) if off < data.bytesize
          else
            @in << data
            off = frames(@in)
            if off == @in.bytesize
              @in.clear
            elsif off.positive?
              @in = @in.byteslice(off, @in.bytesize - off)
            end
          end
          return !@h2.closed?
        end
        @in << data
        return true if @in.bytesize < PREFACE.bytesize + 9
        hl, ll = @in.byteslice(PREFACE.bytesize, 3).unpack('Cn')
        flen = (hl << 16) | ll
        return true if @in.bytesize < PREFACE.bytesize + 9 + flen
        lib(@in, 0, PREFACE.bytesize + 9 + flen) { @h2.read_connection_preface(@settings) }
        @preface = true
        # A larger connection window than HTTP/2's 64 KiB.
        @h2.local_window.desired = CONN_WINDOW
        @h2.send_window_update(CONN_WINDOW - @h2.local_window.capacity)
        rest = @in.byteslice(PREFACE.bytesize + 9 + flen, @in.bytesize)
        @in = String.new(capacity: READ_SIZE)
        input(rest)
      rescue HTTP2::ProtocolError, HTTP2::HPACK::Error, EOFError => e
        Log.warning("HTTP/2 connection error: #{e.class}: #{e.message}")
        begin
          @h2.send_goaway(e.respond_to?(:code) && e.code ? e.code : HTTP2::Error::PROTOCOL_ERROR, e.message) unless @h2.closed?
        rescue StandardError
          nil
        end
        false
      end

      # The fast path for plain DATA on open streams; everything else goes
      # to the library, a frame at a time, in arrival order.
      # Takes in the whole frames in buf; returns the bytes consumed.
      def frames(buf)
        len = buf.bytesize
        off = 0
        h2 = @h2
        max = h2.local_settings.maximum_frame_size
        calls = @calls
        while len - off >= 9
          hl, ll, type, flags, sid = buf.unpack(HEADER, offset: off)
          flen = (hl << 16) | ll
          if flen > max && flen > (1 << 14)
            raise HTTP2::FrameSizeError, "frame of #{flen} bytes exceeds #{max}"
          end
          break if len - off - 9 < flen
          if type == DATA && (flags & (END_STREAM | PADDED)).zero?
            sid &= 0x7fffffff
            call = calls[sid]
            if call && !call.closed && (s = call.stream).state == :open
              # As the library's receive_data, without its objects.
              h2.local_window.consume(flen)
              h2.request_window_update
              s.local_window.consume(flen)
              if flen.positive?
                # A slice that reaches the end of the read buffer would
                # share it (Ruby shares tail substrings): the next read
                # would then allocate a new 256 KiB buffer, and the old
                # one would wait for the GC. unpack copies.
                call.on_data(off + 9 + flen == len ? buf.unpack1('a*', offset: off + 9) : buf.byteslice(off + 9, flen))
              end
              @fast_frames += 1
              off += 9 + flen
              next
            end
          end
          stop = off + 9 + flen
          if (type == HEADERS || type == PUSH_PROMISE) && (flags & END_HEADERS).zero?
            # The library reads the CONTINUATIONs with the HEADERS: all of
            # them must be here.
            stop = continuations(buf, stop, len) or break
          end
          lib(buf, off, stop) { h2.read_frame }
          off = stop
          break if h2.closed?
        end
        off
      end

      # The end of the CONTINUATION frames from i, or nil if incomplete.
      def continuations(buf, i, len)
        loop do
          return nil if len - i < 9
          hl, ll, _type, flags = buf.unpack('CnCC', offset: i)
          flen = (hl << 16) | ll
          return nil if len - i - 9 < flen
          i += 9 + flen
          return i unless (flags & END_HEADERS).zero?
        end
      end

      def lib(buf, from, to)
        io = @io
        io.buf = buf
        io.pos = from
        io.limit = to
        yield
      ensure
        io.buf = nil
      end

      # After a round of input: queued DATA the new windows allow, then
      # trailers that were waiting for it.
      def drain_calls
        @calls.each_value { |c| c.drain if c.blocked? }
      end

      # Writes the output buffer without blocking. True when all is out.
      def flush
        out = @out
        return true if out.empty?
        n = @sock.write_nonblock(out, exception: false)
        return false if n == :wait_writable
        if n == out.bytesize
          out.clear
          true
        else
          # The rest, copied: a tail byteslice would share the buffer and
          # keep the old one alive until the next GC.
          rest = out.unpack1('a*', offset: n)
          out.clear
          out << rest
          rest.clear
          false
        end
      rescue IOError, SystemCallError => e
        Log.debug("connection write error: #{e.class}: #{e.message}")
        @server.drop(self)
        false
      end
    end

    # The server: a listener and its connections.
    class Server
      attr_reader :lock, :path, :conns
      attr_accessor :on_round

      # routes: { '/pkg.Service/Method' => route }. A route is a Proc
      # (unary: called with the request bytes, returns the reply bytes),
      # or an object with open(call) that sets call.handler (streams).
      def initialize(routes)
        @routes = routes
        @conns = {}
        @listener = nil
        @lock = Mutex.new
        @pump_lock = Mutex.new
        @changed = ConditionVariable.new
        @waiters = 0
        @rbuf = String.new(capacity: READ_SIZE)
        @wake_r, @wake_w = IO.pipe
        @settings = [[HTTP2::Settings::MAXIMUM_CONCURRENT_STREAMS, MAX_STREAMS],
                     [HTTP2::Settings::INITIAL_WINDOW_SIZE, STREAM_WINDOW],
                     [HTTP2::Settings::ENABLE_PUSH, 0]]
        @on_round = nil
      end

      def listen(dir)
        path = File.join(dir, "rack-#{Process.pid}.sock")
        File.unlink(path) if File.exist?(path)
        @listener = UNIXServer.new(path)
        @path = path
      end

      def close_listener
        l = @listener or return
        @listener = nil
        l.close
        File.unlink(@path) if @path && File.exist?(@path)
      rescue StandardError
        nil
      end

      # Wakes a thread that pumps (from any thread or a trap handler).
      def wake
        @wake_w.write_nonblock('x', exception: false)
      rescue StandardError
        nil
      end

      # Wakes threads that wait in #await. Under the lock.
      def changed!
        @changed.broadcast if @waiters.positive?
      end

      def route(call)
        r = @routes[call.path]
        if r.nil?
          Log.debug("gRPC method #{call.path} is not implemented")
          call.finish(UNIMPLEMENTED, "unknown method #{call.path}")
        elsif !r.is_a?(Proc)
          r.open(call)
        end
      end

      def unary(call)
        r = @routes[call.path]
        return unless r.is_a?(Proc)
        begin
          reply = r.call((call.messages && call.messages[0]) || ''.b)
          call.send_message(reply)
          call.finish(OK)
        rescue StandardError => e
          Log.error("gRPC handler for #{call.path} failed: #{e.class}: #{e.message}",
                    traceback: (e.backtrace || []).join("\n"), kind: 'internal')
          call.finish(INTERNAL, 'internal error')
        end
      end

      # One turn: waits up to timeout for the sockets, accepts, reads and
      # takes in frames, writes what is queued. Only one thread at a time.
      def pump(timeout)
        rd = [@wake_r]
        wr = nil
        @lock.synchronize do
          rd << @listener if @listener
          @conns.each_value do |c|
            rd << c.sock
            # What waits (last frames of a batch) is written first.
            (wr ||= []) << c.sock unless c.out.empty? || c.flush
          end
        end
        ready = begin
          IO.select(rd, wr, nil, timeout)
        rescue IOError, Errno::EBADF
          nil # a socket closed by another thread meanwhile: next turn
        end
        @lock.synchronize do
          if ready
            r, w = ready
            w.each { |s| (c = @conns[s.fileno]) && c.flush } if w && !w.empty?
            r.each do |s|
              if s.equal?(@wake_r)
                @wake_r.read_nonblock(64, @rbuf, exception: false)
              elsif s.equal?(@listener)
                accept
              elsif (c = @conns[s.fileno])
                read(c)
              end
            end
          end
          @on_round&.call
          @conns.each_value do |c|
            c.drain_calls
            c.flush
          end
          changed!
        end
        ready ? true : false
      end

      # Pumps, or waits for the thread that pumps, until the block (called
      # under the lock) is true or timeout seconds have passed. app_thread:
      # this thread may pump (one app thread, or the I/O thread).
      def await(timeout = nil, may_pump: true)
        deadline = timeout && (Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout)
        loop do
          return true if @lock.synchronize { yield }
          left = deadline && (deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC))
          return false if left && left <= 0
          if may_pump && @pump_lock.try_lock
            begin
              pump(left ? [left, 1].min : 1)
            ensure
              @pump_lock.unlock
            end
          else
            @lock.synchronize do
              next if yield
              @waiters += 1
              begin
                @changed.wait(@lock, left ? [left, 0.05].min : 0.05)
              ensure
                @waiters -= 1
              end
            end
          end
        end
      end

      # Pumps if no other thread does (the watchdog); false if one does.
      def try_pump(timeout)
        return false unless @pump_lock.try_lock
        begin
          pump(timeout)
        ensure
          @pump_lock.unlock
        end
        true
      end

      # Writes a connection's output now (an app thread's frame), without
      # blocking. Under the lock. Asks the pumping thread to finish the job
      # if the socket is full.
      def flush_now(conn)
        wake unless conn.flush || conn.dead
      end

      def accept
        while (sock = @listener&.accept_nonblock(exception: false)) && sock != :wait_readable
          c = Conn.new(self, sock, @settings)
          @conns[sock.fileno] = c
        end
      rescue IOError, SystemCallError => e
        Log.warning("accept failed: #{e.class}: #{e.message}")
      end

      def read(conn)
        r = conn.sock.read_nonblock(READ_SIZE, @rbuf, exception: false)
        return if r == :wait_readable
        return drop(conn) if r.nil?
        ok = begin
          conn.input(@rbuf)
        rescue StandardError => e
          Log.error("HTTP/2 input failed: #{e.class}: #{e.message}", traceback: (e.backtrace || []).join("\n"),
                                                                    kind: 'internal')
          false
        end
        return if ok
        conn.flush
        drop(conn)
      rescue IOError, SystemCallError => e
        Log.debug("connection read error: #{e.class}: #{e.message}")
        drop(conn)
      end

      # Closes a connection; every call on it is cancelled. Under the lock.
      def drop(conn)
        return if conn.dead
        conn.dead = true
        @conns.delete(conn.sock.fileno)
        begin
          conn.sock.close
        rescue StandardError
          nil
        end
        conn.calls.values.each { |c| c.on_closed(nil) }
        conn.calls.clear
        changed!
      end

      # Sends GOAWAY on every connection, writes what is queued (waiting up
      # to timeout seconds), and closes them.
      def close_all(timeout = 2)
        close_listener
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
        @lock.synchronize do
          @conns.each_value do |c|
            c.h2.send_goaway(0) unless c.h2.closed?
          rescue StandardError
            nil
          end
        end
        loop do
          pending = @lock.synchronize { @conns.values.reject { |c| c.flush || c.dead } }
          break if pending.empty?
          left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
          break if left <= 0
          begin
            IO.select(nil, pending.map(&:sock), nil, left)
          rescue IOError, Errno::EBADF
            nil
          end
        end
        @lock.synchronize { @conns.values.each { |c| drop(c) } }
      end
    end
  end
end
