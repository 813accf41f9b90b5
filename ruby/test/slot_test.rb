# frozen_string_literal: true
require 'helper'
require 'tempfile'

class ClosingBody
  attr_reader :closes

  def initialize(chunks, raise_at: nil)
    @chunks = chunks
    @raise_at = raise_at
    @closes = 0
  end

  def each
    @chunks.each_with_index do |c, i|
      raise 'boom in each' if @raise_at == i
      yield c
    end
  end

  def close
    @closes += 1
  end
end

class SlotTest < Minitest::Test
  include SlotHelpers

  def hello
    ->(_env) { [200, { 'Content-Type' => 'text/plain' }, ["Hello, world!\n"]] }
  end

  def test_G1_hello_is_one_frame
    out = get(hello)
    assert_equal 1, out.size
    f = out[0]
    assert f.end
    refute f.abort
    assert_equal 200, f.head.status
    assert_equal 'OK', f.head.reason
    assert_equal [['Content-Type', 'text/plain']], hdrs(f)
    assert_equal "Hello, world!\n", f.body
  end

  def test_R28_lint_hello
    out = get(Rack::Lint.new(hello))
    assert_nil out[0].error
    assert_equal "Hello, world!\n", out[0].body
  end

  def test_R2_R3_R6_R10_R11_env_keys
    seen = nil
    app = lambda do |env|
      seen = env
      [200, {}, []]
    end
    out = get(Rack::Lint.new(app), path: '/a%2Fb', query: 'x=1', opts: { threads: 4, workers: 2 })
    assert_nil out[0].error
    refute seen.frozen?
    assert_equal [1, 3], seen['rack.version']
    assert_equal '/a%2Fb', seen['PATH_INFO']
    assert_equal 'x=1', seen['QUERY_STRING']
    assert_equal Encoding::ASCII_8BIT, seen['PATH_INFO'].encoding
    assert_equal true, seen['rack.multithread']
    assert_equal true, seen['rack.multiprocess']
    assert_equal false, seen['rack.run_once']
    assert_equal false, seen['rack.hijack?']
    refute seen.key?('rack.hijack')
    assert_equal 'http', seen['rack.url_scheme']
    assert_equal 'rid-1', seen['bridge.request_id']
    assert_equal 'HTTP/1.1', seen['SERVER_PROTOCOL']
    assert seen['rack.logger'].respond_to?(:info)
  end

  def test_R4_raw_path_from_request_uri_with_script_name
    seen = nil
    app = ->(env) { seen = env; [200, {}, []] }
    get(app, path: '/b c', vars: { 'SCRIPT_NAME' => '/app', 'REQUEST_URI' => '/app/b%20c?q' })
    assert_equal '/app', seen['SCRIPT_NAME']
    assert_equal '/b%20c', seen['PATH_INFO']
  end

  def test_R3_empty_content_length_and_http_content_headers_removed
    seen = nil
    app = ->(env) { seen = env; [200, {}, []] }
    out = get(Rack::Lint.new(app), vars: { 'CONTENT_LENGTH' => '', 'HTTP_CONTENT_TYPE' => 'x', 'HTTP_CONTENT_LENGTH' => '3' })
    assert_nil out[0].error
    refute seen.key?('CONTENT_LENGTH')
    refute seen.key?('HTTP_CONTENT_TYPE')
    refute seen.key?('HTTP_CONTENT_LENGTH')
  end

  def test_R8_input_read_over_several_frames
    got = nil
    app = lambda do |env|
      got = env['rack.input'].read
      env['rack.input'].rewind
      [200, {}, [env['rack.input'].read(3)]]
    end
    frames = [V1::RequestFrame.new(head: head(method: 'POST', clen: 6, vars: { 'CONTENT_LENGTH' => '6' }), body: 'abc'),
              V1::RequestFrame.new(body: 'def'), V1::RequestFrame.new(end: true)]
    out = run_slot(Rack::Lint.new(app), frames)
    assert_equal 'abcdef', got
    assert_equal 'abc', body_of(out)
  end

  def test_slot_serves_requests_one_after_another
    frames = [V1::RequestFrame.new(head: head(request_id: 'a'), end: true),
              V1::RequestFrame.new(head: head(request_id: 'b'), end: true)]
    out = run_slot(->(env) { [200, {}, [env['bridge.request_id']]] }, frames)
    assert_equal %w[a b], out.map(&:body)
    assert(out.all?(&:end))
  end

  def test_R18_multiline_header_values_become_lines
    app = ->(_env) { [200, { 'Set-Cookie' => "a=1\nb=2" }, ['x']] }
    out = get(Rack::Lint.new(app))
    assert_equal [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']], hdrs(out[0])
  end

  def test_G11_cr_in_header_value_is_error_before_head
    out = get(->(_env) { [200, { 'X-A' => "a\rb" }, ['x']] })
    assert_equal 1, out.size
    assert out[0].end
    refute out[0].abort
    assert_nil out[0].head
    assert_equal 'protocol', out[0].error.kind
  end

  def test_G11_R18_status_header_and_bad_name_rejected
    assert get(->(_e) { [200, { 'Status' => '200' }, []] })[0].error
    assert get(->(_e) { [200, { 'X A' => 'b' }, []] })[0].error
  end

  def test_G12_hop_by_hop_stripped
    out = get(->(_e) { [200, { 'Connection' => 'close', 'X-A' => 'b' }, ['x']] })
    assert_equal [['X-A', 'b']], hdrs(out[0])
  end

  def test_R20_rack_headers_not_sent_R11_hijack_is_error
    out = get(->(_e) { [200, { 'rack.foo' => 'x', 'X-A' => 'b' }, ['x']] })
    assert_equal [['X-A', 'b']], hdrs(out[0])
    assert get(->(_e) { [200, { 'rack.hijack' => proc {} }, []] })[0].error
  end

  def test_G2_exception_before_head
    out = get(->(_e) { raise 'boom' })
    assert_equal 1, out.size
    assert_nil out[0].head
    assert out[0].end
    refute out[0].abort
    assert_equal 'app', out[0].error.kind
    assert_match(/boom/, out[0].error.message)
  end

  def test_R26_G5_exception_in_each_before_data_is_500_and_closes_once
    b = ClosingBody.new(['', 'x'], raise_at: 1)
    out = get(->(_e) { [200, {}, b] })
    assert_equal 1, out.size
    assert_nil out[0].head
    assert out[0].error
    assert_equal 1, b.closes
  end

  def test_G3_G5_exception_after_head_aborts_and_closes_once
    b = ClosingBody.new(%w[a b], raise_at: 1)
    out = get(->(_e) { [200, {}, b] })
    assert_equal 2, out.size
    assert_equal 'a', out[0].body
    assert_equal 200, out[0].head.status
    assert out[1].error
    assert out[1].end
    assert out[1].abort
    assert_equal 1, b.closes
  end

  def test_tracker_gets_each_request_id_until_the_app_lets_go
    calls = []
    app = lambda do |env|
      calls << [:app, env['bridge.request_id']]
      [200, {}, ['x']]
    end
    slot = BridgeRunner::Slot.new(app, rack3: false, tracker: ->(d, rid) { calls << [d, rid] })
    frames = wire(%w[a b].map { |rid| V1::RequestFrame.new(head: head(request_id: rid), end: true) })
    slot.run(frames.each) { |_f| nil }
    assert_equal [[1, 'a'], [:app, 'a'], [-1, 'a'], [1, 'b'], [:app, 'b'], [-1, 'b']], calls
    # A cancelled stream: the writer breaks out of the Slot.
    calls.clear
    slot.run(frames.each) { |_f| break }
    assert_equal [[1, 'a'], [:app, 'a'], [-1, 'a']], calls
  end

  def test_G1_R25_streamed_chunks_skip_empty_and_close_once
    b = ClosingBody.new(['', 'a', '', 'b'])
    out = get(Rack::Lint.new(->(_e) { [200, {}, b] }))
    assert_equal ['a', 'b', ''], out.map(&:body)
    assert out[0].head
    assert_nil out[1].head
    assert out[2].end
    assert(out.none?(&:error))
    assert_equal 1, b.closes
  end

  def test_G1_empty_body_head_with_end
    b = ClosingBody.new([])
    out = get(->(_e) { [200, {}, b] })
    assert_equal 1, out.size
    assert out[0].head
    assert out[0].end
    assert_equal 1, b.closes
  end

  def test_G13_content_length_truncates_and_short_aborts
    b = ClosingBody.new(%w[abc def])
    out = get(->(_e) { [200, { 'Content-Length' => '4' }, b] })
    assert_equal 'abcd', body_of(out)
    refute out.last.abort
    assert_equal 1, b.closes
    out = get(->(_e) { [200, { 'Content-Length' => '10' }, ClosingBody.new(%w[abc])] })
    assert out.last.end
    assert out.last.abort
    assert get(->(_e) { [200, { 'Content-Length' => 'x' }, []] })[0].error
  end

  def test_G14_R21_204_has_no_body_and_no_content_headers
    b = ClosingBody.new(['x'])
    out = get(->(_e) { [204, { 'Content-Type' => 'text/plain', 'X-A' => 'b' }, b] })
    assert_equal 1, out.size
    assert_equal 204, out[0].head.status
    assert_equal [['X-A', 'b']], hdrs(out[0])
    assert_equal '', out[0].body
    assert_equal 1, b.closes
  end

  def test_R27_HEAD_sends_no_body_and_closes
    b = ClosingBody.new(['x'])
    out = get(->(_e) { [200, {}, b] }, method: 'HEAD')
    assert_equal 1, out.size
    assert_equal '', out[0].body
    assert_equal 1, b.closes
  end

  def test_R22_G23_to_path_is_a_file_frame
    tf = Tempfile.new('body')
    tf.write('file body')
    tf.flush
    body = Rack::File.new(File.dirname(tf.path))
    out = get(Rack::Lint.new(body), path: "/#{File.basename(tf.path)}")
    assert_nil out.last.error # Lint 2.2 hides to_path: the body is iterated
    assert_equal 'file body', body_of(out)
    out = get(body, path: "/#{File.basename(tf.path)}")
    assert_equal 1, out.size
    assert_equal tf.path, out[0].file.path
    assert_equal(-1, out[0].file.length)
    assert out[0].end
  ensure
    tf&.close!
  end

  def test_R16_R17_R22_bad_responses
    assert get(->(_e) { [200, {}] })[0].error
    assert get(->(_e) { [99, {}, []] })[0].error
    assert get(->(_e) { [200, {}, 'str'] })[0].error
    assert get(->(_e) { [200, {}, [1]] })[0].error
  end

  def test_R17_string_status_in_rack2
    out = get(->(_e) { ['404', {}, ['nf']] })
    assert_equal 404, out[0].head.status
    assert_equal 'Not Found', out[0].head.reason
  end

  def test_G9_unknown_status_has_empty_reason
    assert_equal '', get(->(_e) { [299, {}, ['x']] })[0].head.reason
  end

  def test_R28_lint_catches_app_errors_as_500
    out = get(Rack::Lint.new(->(_e) { [200, { 'Content-Type' => 'x' }, 'str'] }))
    assert out[0].error
    assert_nil out[0].head
  end

  def test_R9_R15_G8_errors_and_logger_become_log_lines
    io = StringIO.new
    old = BridgeRunner::Log.io
    BridgeRunner::Log.io = io
    get(lambda do |env|
      env['rack.errors'].puts 'to errors'
      env['rack.errors'].write 'partial'
      env['rack.logger'].info 'to logger'
      [200, {}, []]
    end, request_id: 'rq9')
    lines = io.string.lines.map { |l| JSON.parse(l) }
    e = lines.find { |l| l['message'] == 'to errors' }
    assert_equal 'errors', e['stream']
    assert_equal 'rq9', e['request_id']
    assert_equal 'rack', e['runner']
    assert lines.find { |l| l['message'] == 'partial' }
    assert_equal 'logger', lines.find { |l| l['message'] == 'to logger' }['stream']
  ensure
    BridgeRunner::Log.io = old
  end

  # Rack 3 semantics, forced on (Rack 2.2's Lint is not used for these).
  def test_R6_R14_R19_rack3_mode
    seen = nil
    calls = []
    app = lambda do |env|
      seen = env
      env['rack.response_finished'] << ->(*a) { calls << [:first, a[3]] }
      env['rack.response_finished'] << ->(*a) { calls << [:second, a[3]] }
      [200, { 'set-cookie' => %w[a=1 b=2], 'content-type' => 'text/plain' }, ['x']]
    end
    out = get(app, opts: { rack3: true })
    refute seen.key?('rack.version')
    refute seen.key?('rack.hijack?')
    assert_equal [['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['content-type', 'text/plain']], hdrs(out[0])
    assert_equal [[:second, nil], [:first, nil]], calls
    assert get(->(_e) { [200, { 'Content-Type' => 'x' }, []] }, opts: { rack3: true })[0].error
    assert get(->(_e) { ['200', {}, []] }, opts: { rack3: true })[0].error
  end

  def test_R23_R24_rack3_streaming_body
    closes = 0
    body = Object.new
    body.define_singleton_method(:call) do |stream|
      stream.write('a')
      stream << 'b'
      stream.close
    end
    body.define_singleton_method(:close) { closes += 1 }
    out = get(->(_e) { [200, {}, body] }, opts: { rack3: true })
    assert_equal 200, out[0].head.status
    assert_equal ['', 'a', 'b', ''], out.map(&:body)
    assert out.last.end
    assert_equal 1, closes
  end

  # R28: every response shape passes Rack::Lint 2.2 and is sent without error.
  def test_R28_lint_reports_nothing_for_each_response_shape
    shapes = {
      'array' => [200, { 'Content-Type' => 'text/plain', 'Content-Length' => '2' }, ['hi']],
      'each' => [200, { 'Content-Type' => 'text/plain' }, ClosingBody.new(['a', '', 'b'])],
      'empty' => [200, { 'Content-Type' => 'text/plain' }, []],
      '204' => [204, {}, []],
      '304' => [304, { 'ETag' => '"x"' }, []],
      'cookies' => [200, { 'Content-Type' => 'text/plain', 'Set-Cookie' => "a=1\nb=2" }, ['x']],
      'string status' => ['201', { 'Content-Type' => 'text/plain' }, ['made']],
      'body proxy' => [200, { 'Content-Type' => 'text/plain' }, Rack::BodyProxy.new(['p']) {}]
    }
    shapes.each do |name, res|
      out = get(Rack::Lint.new(->(_e) { res }))
      assert(out.none?(&:error), "#{name}: #{out.map(&:error).compact.map(&:message)}")
      assert out.last.end, name
      assert_equal 1, out.count(&:head), name
      refute out.last.abort, name
    end
    out = get(Rack::Lint.new(->(_e) { [200, { 'Content-Type' => 'text/plain' }, []] }), method: 'HEAD')
    assert(out.none?(&:error))
  end

  def test_R8_large_body_spills_to_a_rewindable_tempfile
    got = nil
    app = lambda do |env|
      inp = env['rack.input']
      first = inp.read(10)
      inp.rewind
      got = [first, inp.read.bytesize, inp.read, inp.read(1)]
      [200, { 'Content-Type' => 'text/plain' }, ['ok']]
    end
    chunk = 'x' * (700 * 1024)
    frames = [V1::RequestFrame.new(head: head(method: 'POST', clen: -1), body: chunk),
              V1::RequestFrame.new(body: chunk), V1::RequestFrame.new(body: 'yz', end: true)]
    out = run_slot(Rack::Lint.new(app), frames)
    assert_nil out[0].error
    assert_equal ['x' * 10, 2 * chunk.bytesize + 2, '', nil], got
    seen = nil
    run_slot(->(e) { e['rack.input'].read; seen = e['rack.input'].io.class; [200, {}, []] }, frames)
    assert_equal Tempfile, seen
  end

  def test_request_stream_ending_mid_body_is_an_input_error_for_a_reading_app
    frames = [V1::RequestFrame.new(head: head(method: 'POST', clen: 4), body: 'ab')]
    out = run_slot(->(e) { e['rack.input'].read; [200, {}, []] }, frames)
    assert_equal 1, out.size
    assert_match(/incomplete/, out[0].error.message)
    out = run_slot(->(_e) { [200, {}, ['x']] }, frames)
    assert_equal ['x'], out.map(&:body)
  end

  # Contract: body frames are read only as the app asks; unread ones are
  # discarded up to `end` before the next head.
  def test_input_is_read_lazily_and_the_rest_drained
    pulled = []
    frames = [V1::RequestFrame.new(head: head(method: 'POST', clen: 6, request_id: 'a'), body: 'ab'),
              V1::RequestFrame.new(body: 'cd'), V1::RequestFrame.new(body: 'ef'), V1::RequestFrame.new(end: true),
              V1::RequestFrame.new(head: head(request_id: 'b'), end: true)]
    frames = wire(frames)
    en = Enumerator.new { |y| frames.each { |f| pulled << f; y << f } }
    reads = []
    app = lambda do |env|
      reads << pulled.size
      reads << env['rack.input'].read(3)
      reads << pulled.size
      [200, {}, [env['bridge.request_id']]]
    end
    out = []
    BridgeRunner::Slot.new(app, rack3: false).run(en) { |f| out << unwire(f) }
    assert_equal [1, 'abc', 2, 5, nil, 5], reads
    assert_equal %w[a b], out.map(&:body)
  end

  def test_R8_gets_each_and_read_with_buffer
    frames = [V1::RequestFrame.new(head: head(method: 'POST', clen: -1), body: "l1\nl"),
              V1::RequestFrame.new(body: "2\nl3"), V1::RequestFrame.new(end: true)]
    got = nil
    app = lambda do |env|
      inp = env['rack.input']
      a = inp.gets
      b = []
      inp.each { |l| b << l }
      inp.rewind
      buf = +''
      inp.read(2, buf)
      got = [a, b, buf, inp.read, inp.read, inp.read(1)]
      [200, {}, []]
    end
    out = run_slot(Rack::Lint.new(app), frames)
    assert_nil out[0].error
    assert_equal ["l1\n", ["l2\n", 'l3'], 'l1', "\nl2\nl3", '', nil], got
  end

  # G4/R14: the response writer going away (a cancel) closes the body once
  # and runs rack.response_finished with an error.
  def test_G4_R14_cancel_mid_body_closes_once_and_reports_error
    b = ClosingBody.new(%w[a b c])
    errs = []
    app = lambda do |env|
      env['rack.response_finished'] = [->(*a) { errs << a[3] }]
      [200, {}, b]
    end
    sent = 0
    catch(:gone) do
      BridgeRunner::Slot.new(app, rack3: false).run(wire([V1::RequestFrame.new(head: head, end: true)]).each) do |_f|
        sent += 1
        throw :gone
      end
    end
    assert_equal 1, sent
    assert_equal 1, b.closes
    assert_kind_of IOError, errs[0]
  end

  def test_R8_R16_R19_rack3_frozen_response_and_input_close
    assert get(->(_e) { [200, {}, []].freeze }, opts: { rack3: true })[0].error
    assert get(->(_e) { [200, {}.freeze, []] }, opts: { rack3: true })[0].error
    out = get(lambda do |env|
      env['rack.input'].close
      [200, {}, [env['rack.input'].read]]
    end, opts: { rack3: true })
    assert_nil out[0].error
  end
end

# With a reqs that can flush (the native transport's SlotStream), a
# response's last frame may wait in the output buffer; it is sent before the
# app's after-response work.
class SlotFlushTest < Minitest::Test
  include SlotHelpers

  class Reqs
    attr_reader :log

    def initialize(frames, log)
      @frames = frames.each
      @log = log
    end

    def next = @frames.next
    def flush = @log << :flush
  end

  def serve(app)
    log = []
    reqs = Reqs.new(wire([V1::RequestFrame.new(head: head, end: true)]), log)
    BridgeRunner::Slot.new(app, rack3: false).run(reqs) { |_f, fin| log << (fin ? :last_frame : :frame) }
    log
  end

  def test_last_frame_is_flushed_before_body_close
    log = []
    got = serve(->(_e) { [200, {}, Rack::BodyProxy.new(['x']) { log << :close }] })
    assert_equal %i[frame last_frame flush], got
    assert_equal [:close], log
    # An Array that responds to close (a body with after-response work).
    body = ['x']
    body.define_singleton_method(:close) { log << :close2 }
    assert_equal %i[last_frame flush], serve(->(_e) { [200, {}, body] })
    assert_equal %i[close close2], log
  end

  def test_flush_comes_before_close
    order = []
    reqs = Reqs.new(wire([V1::RequestFrame.new(head: head, end: true)]), order)
    app = ->(_e) { [200, {}, Rack::BodyProxy.new(['x']) { order << :close }] }
    BridgeRunner::Slot.new(app, rack3: false).run(reqs) { |_f, fin| order << :last_frame if fin }
    assert_equal %i[last_frame flush close], order
  end

  def test_plain_array_body_leaves_the_last_frame_for_the_next_read
    assert_equal [:last_frame], serve(->(_e) { [200, {}, ['x']] })
  end

  def test_streamed_chunks_are_not_held
    assert_equal %i[frame frame last_frame flush], serve(->(_e) { [200, {}, Rack::BodyProxy.new(%w[a b]) {}] })
  end
end
