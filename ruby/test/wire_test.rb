# frozen_string_literal: true
require 'helper'
require 'bridge_runner/wire'

# Wire's hand-written codec against google-protobuf's generated classes.
class WireTest < Minitest::Test
  V1 = Bridge::V1
  W = BridgeRunner::Wire

  VARS = [['REQUEST_METHOD', 'GET'], ['SCRIPT_NAME', ''], ['X' * 200, 'y' * 20_000], ['', ''],
          ["HTTP_\xC3\x89".b, "\xff\x00".b]].freeze

  def frame(clen, fin, body)
    h = V1::RequestHead.new(request_id: 'rid-é', url_scheme: 'https', content_length: clen,
                            vars: VARS.map { |k, v| V1::Var.new(name: k.b, value: v.b) })
    f = V1::RequestFrame.new(head: h, end: fin)
    f.body = body if body
    V1::RequestFrame.encode(f)
  end

  def test_request_frames_decode_as_protobuf_encodes_them
    [[-1, true, 'body'], [0, false, nil], [123_456_789_012, true, 'x' * 70_000]].each do |clen, fin, body|
      d = W.decode_request(frame(clen, fin, body))
      assert_equal VARS.flatten.map(&:b), d.head.vars
      assert_equal ['rid-é', 'https', clen, fin], [d.head.request_id, d.head.url_scheme, d.head.content_length, d.end]
      assert_equal body.to_s, d.body.to_s
      refute d.head.vars.any?(&:frozen?), 'the app may change env values'
      d = W.decode_request(V1::RequestFrame.encode(V1::RequestFrame.new(body: body.to_s, end: fin)))
      assert_nil d.head
      assert_equal fin, d.end
      if body.to_s.empty?
        assert_nil d.body
      else
        assert_equal body, d.body
      end
    end
  end

  def test_unknown_fields_are_skipped
    bytes = frame(5, true, 'ab')
    # field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32 (and a two-byte tag, field 100)
    extra = "\x48\x96\x01\x51#{"\0" * 8}\x5a\x03abc\x65#{"\0" * 4}\xa2\x06\x01z".b
    d = W.decode_request(extra + bytes + extra)
    assert_equal 5, d.head.content_length
    assert_equal 'ab', d.body
    assert_raises(ArgumentError) { W.decode_request(bytes.byteslice(0, bytes.bytesize - 1)) }
  end

  def test_response_frames_decode_with_protobuf
    hd = W.head(200, 'OK', ['Content-Type'.b, 'text/plain', 'X-Empty', '', 'X-Long', 'v' * 300,
                            'X-Huge', 'w' * 20_000, 'x-utf', 'é'])
    cases = [{}, { head: hd, body: 'Hello', fin: true }, { body: 'é' * 40_000 },
             { head: hd, file: ['/tmp/é', 5, -1], fin: true },
             { error: ['app', "bad \xff".b, 'tb'], fin: true, abort: true }, { fin: true, retire: true }]
    cases.each do |kw|
      r = V1::ResponseFrame.decode(W.response(**kw))
      if kw[:head]
        assert_equal [200, 'OK'], [r.head.status, r.head.reason]
        assert_equal [['Content-Type', 'text/plain'], ['X-Empty', ''], ['X-Long', 'v' * 300], ['X-Huge', 'w' * 20_000],
                      ['x-utf', 'é'.b]], r.head.headers.map { |x| [x.name, x.value] }
      end
      assert_equal kw[:body].to_s.b, r.body
      assert_equal kw[:file], [r.file.path, r.file.offset, r.file.length] if kw[:file]
      assert_equal ['app', "bad \uFFFD", 'tb'], [r.error.kind, r.error.message, r.error.traceback] if kw[:error]
      assert_equal [!!kw[:fin], !!kw[:abort], !!kw[:retire]], [r.end, r.abort, r.retire]
    end
  end
end
