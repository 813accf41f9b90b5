# frozen_string_literal: true
# The native transport (h2.rb) against a hand-written HTTP/2 client: gRPC
# framing, the DATA fast path against the library's path, queueing when the
# peer's window is short, cancellation and GOAWAY.
require 'helper'
require 'tmpdir'
require 'timeout'
require 'bridge_runner/h2'

class H2Test < Minitest::Test
  H2 = BridgeRunner::H2
  HPACK = Protocol::HPACK

  # A stream route that records what its calls receive and consumes it.
  class Recorder
    attr_reader :calls, :messages, :closes, :half_closed

    def initialize
      @calls = []
      @messages = []
      @closes = Hash.new(0)
      @half_closed = []
    end

    def open(call)
      call.handler = self
      @calls << call
    end

    def message(call, msg, size)
      @messages << [call.sid, msg]
      call.consumed(size)
    end

    def half_close(call) = @half_closed << call.sid
    def closed(call) = @closes[call.sid] += 1
  end

  # Frames by hand; headers through the library's HPACK.
  class Client
    attr_reader :frames

    def initialize(path, settings = [[4, 1 << 20]])
      @sock = UNIXSocket.new(path)
      @enc = HPACK::Context.new
      @dec = HPACK::Context.new
      @frames = []
      @in = ''.b
      write(H2::PREFACE + frame(4, 0, 0, settings.map { |k, v| [k, v].pack('nN') }.join))
    end

    def frame(type, flags, sid, payload)
      l = payload.bytesize
      [l >> 16, l & 0xffff, type, flags, sid].pack('CnCCN') + payload
    end

    def write(bytes) = @sock.write(bytes)

    def headers(sid, path, flags: 4)
      block = HPACK::Compressor.new(''.b, @enc).encode([[':method', 'POST'], [':scheme', 'http'], [':path', path],
                                                        [':authority', 'runner'], ['content-type', 'application/grpc'],
                                                        ['te', 'trailers']])
      write(frame(1, flags, sid, block))
    end

    def self.msg(bytes) = [0, bytes.bytesize].pack('CN') + bytes

    def data(sid, payload, flags: 0) = write(frame(0, flags, sid, payload))

    # Reads frames until the block is true for the frames so far; SETTINGS
    # are acknowledged, headers decoded.
    def until_frames(timeout = 5)
      Timeout.timeout(timeout) do
        until yield(@frames)
          read_more
        end
      end
      @frames
    end

    def read_more
      @in << @sock.readpartial(65_536)
      while @in.bytesize >= 9
        hl, ll, type, flags, sid = @in.unpack('CnCCN')
        len = (hl << 16) | ll
        break if @in.bytesize < 9 + len
        payload = @in.byteslice(9, len)
        @in = @in.byteslice(9 + len, @in.bytesize)
        write(frame(4, 1, 0, '')) if type == 4 && (flags & 1).zero?
        payload = HPACK::Decompressor.new(payload, @dec).decode.to_h if type == 1
        @frames << [type, flags, sid, payload]
      end
    end

    def of(sid, type = nil) = @frames.select { |f| f[2] == sid && (type.nil? || f[0] == type) }
    def close = @sock.close
  end

  def setup
    @dir = Dir.mktmpdir('h2-test')
    @rec = Recorder.new
    @server = H2::Server.new('/t.S/Reverse' => proc { |req| req.reverse }, '/t.S/Stream' => @rec)
    @path = @server.listen(@dir)
    @stop = false
    @pumper = Thread.new { @server.pump(0.02) until @stop }
  end

  def teardown
    @stop = true
    @pumper.join(2)
    @server.close_all(0.5)
    FileUtils.rm_rf(@dir)
  end

  def locked(&) = @server.lock.synchronize(&)

  def trailers_of(c, sid)
    c.until_frames { |_| c.of(sid, 1).any? { |f| (f[1] & 1) == 1 } }
    c.of(sid, 1).last[3]
  end

  def test_unary_reply_and_trailers
    c = Client.new(@path)
    c.headers(1, '/t.S/Reverse')
    c.data(1, Client.msg('abc'), flags: 1)
    t = trailers_of(c, 1)
    assert_equal '0', t['grpc-status']
    assert_equal '200', c.of(1, 1).first[3][':status']
    assert_equal 'application/grpc', c.of(1, 1).first[3]['content-type']
    assert_equal [Client.msg('cba')], c.of(1, 0).map { |f| f[3] }
  end

  def test_unknown_method_is_unimplemented
    c = Client.new(@path)
    c.headers(1, '/t.S/Nope', flags: 5)
    assert_equal '12', trailers_of(c, 1)['grpc-status']
  end

  def test_fast_path_and_library_path_deliver_the_same_with_the_same_accounting
    c = Client.new(@path)
    c.headers(1, '/t.S/Stream')
    sleep 0.1
    conn = locked { @server.conns.values.first }
    used0 = locked { conn.h2.local_window.used }
    m = %w[one two three four five six].map { |s| Client.msg(s) }
    c.data(1, m[0])                                         # plain: fast path
    c.data(1, [3].pack('C') + m[1] + "\0\0\0", flags: 8)    # padded: the library
    c.data(1, m[2].byteslice(0, 4))                         # one message in two frames
    c.data(1, m[2].byteslice(4, 100))
    c.data(1, m[3] + m[4])                                  # two messages in one frame
    c.data(1, m[5], flags: 1)                               # END_STREAM: the library
    Timeout.timeout(5) { sleep 0.01 until locked { @rec.half_closed == [1] } }
    assert_equal %w[one two three four five six], locked { @rec.messages.map(&:last) }
    assert_equal 4, locked { conn.fast_frames }, 'plain DATA frames on an open stream'
    sent = m.sum(&:bytesize) + 4 # with the padded frame's pad length and padding
    assert_equal sent, locked { conn.h2.local_window.used } - used0, 'both paths count against the window'
  end

  def test_stream_window_acknowledged_as_consumed
    c = Client.new(@path)
    c.headers(1, '/t.S/Stream')
    big = Client.msg('x' * 300_000)
    # Frames of at most 16 KiB, the size we advertise.
    (0...big.bytesize).step(16_384) { |i| c.data(1, big.byteslice(i, 16_384)) }
    c.until_frames { |fs| fs.any? { |f| f[0] == 8 && f[2] == 1 } }
    inc = c.of(1, 8).sum { |f| f[3].unpack1('N') }
    assert_equal big.bytesize, inc, 'the consumed message is given back'
  end

  def test_window_exhaustion_queues_and_trailers_wait
    c = Client.new(@path, [[4, 10]]) # the client takes 10 bytes per stream
    c.headers(1, '/t.S/Stream')
    Timeout.timeout(5) { sleep 0.01 until locked { @rec.calls.size == 1 } }
    c.until_frames { |fs| fs.any? { |f| f[0] == 4 && (f[1] & 1) == 1 } } # our SETTINGS acknowledged
    call = @rec.calls[0]
    locked do
      assert call.send_message('y' * 100), 'queued, not refused'
      call.finish(0)
      @server.flush_now(call.conn)
    end
    c.data(1, '', flags: 1)
    c.until_frames { |_| c.of(1, 0).sum { |f| f[3].bytesize } >= 10 }
    sleep 0.1
    c.read_more if IO.select([c.instance_variable_get(:@sock)], nil, nil, 0.1)
    assert_equal 10, c.of(1, 0).sum { |f| f[3].bytesize }, 'no more than the window'
    assert_empty c.of(1, 1).select { |f| (f[1] & 1) == 1 }, 'trailers wait for the data'
    assert locked { call.blocked? }
    c.write(c.frame(8, 0, 1, [1000].pack('N')))
    t = trailers_of(c, 1)
    assert_equal '0', t['grpc-status']
    assert_equal [0, 100].pack('CN') + ('y' * 100), c.of(1, 0).map { |f| f[3] }.join
  end

  def test_large_message_leaves_in_frames_of_the_peers_size
    c = Client.new(@path, [[4, 1 << 20]])
    c.headers(1, '/t.S/Stream')
    Timeout.timeout(5) { sleep 0.01 until locked { @rec.calls.size == 1 } }
    call = @rec.calls[0]
    body = (0...100_000).map { |i| (i % 251).chr }.join.b
    locked do
      call.send_message(body)
      @server.flush_now(call.conn)
    end
    # The connection's window (HTTP/2's 65,535 bytes: this client sends no
    # WINDOW_UPDATE for it yet) is the limit, then the rest follows.
    c.until_frames { |_| c.of(1, 0).sum { |f| f[3].bytesize } >= 65_535 }
    sleep 0.1
    c.read_more if IO.select([c.instance_variable_get(:@sock)], nil, nil, 0.1)
    assert_equal 65_535, c.of(1, 0).sum { |f| f[3].bytesize }
    c.write(c.frame(8, 0, 0, [1 << 20].pack('N')))
    c.until_frames { |_| c.of(1, 0).sum { |f| f[3].bytesize } >= body.bytesize + 5 }
    sizes = c.of(1, 0).map { |f| f[3].bytesize }
    assert(sizes.all? { |n| n <= 16_384 }, "frames of at most 16 KiB: #{sizes}")
    assert_equal [0, body.bytesize].pack('CN') + body, c.of(1, 0).map { |f| f[3] }.join
  end

  def test_rst_stream_cancels_once_and_the_connection_lives_on
    c = Client.new(@path)
    c.headers(1, '/t.S/Stream')
    c.data(1, Client.msg('a'))
    Timeout.timeout(5) { sleep 0.01 until locked { @rec.messages.size == 1 } }
    c.write(c.frame(3, 0, 1, [8].pack('N'))) # RST_STREAM CANCEL
    c.data(1, Client.msg('late'))            # in flight: ignored
    Timeout.timeout(5) { sleep 0.01 until locked { @rec.closes[1] == 1 } }
    c.headers(3, '/t.S/Reverse')
    c.data(3, Client.msg('ok'), flags: 1)
    assert_equal '0', trailers_of(c, 3)['grpc-status']
    assert_equal({ 1 => 1 }, locked { @rec.closes.dup }, 'closed once')
    assert_equal ['a'], locked { @rec.messages.map(&:last) }
    assert locked { @rec.calls[0].closed }
    assert_raises(BridgeRunner::StreamGone) do
      locked { raise BridgeRunner::StreamGone if @rec.calls[0].closed }
    end
  end

  def test_goaway_on_close_all
    c = Client.new(@path)
    c.headers(1, '/t.S/Reverse')
    c.data(1, Client.msg('x'), flags: 1)
    trailers_of(c, 1)
    @stop = true
    @pumper.join(2)
    @server.close_all(1)
    c.until_frames { |fs| fs.any? { |f| f[0] == 7 } }
    goaway = c.frames.find { |f| f[0] == 7 }
    assert_equal [1, 0], goaway[3].unpack('NN'), 'last stream 1, NO_ERROR'
  end
end
