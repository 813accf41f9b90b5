# frozen_string_literal: true
# G items (docs/conformance.md, "Behaviour shared by every shim and front")
# checked on the Ruby shim's Slot.
require 'helper'

class SharedRulesTest < Minitest::Test
  include SlotHelpers

  def status_app(status)
    ->(_env) { [status, {}, ['x']] }
  end

  # G10: final status 200..999, otherwise an app error (no head, Go's 500);
  # an app cannot send a 1xx.
  def test_G10_status_out_of_range_is_an_app_error_before_the_head
    [0, 99, 100, 101, 103, 199, 1000, 2000, -200].each do |s|
      out = get(status_app(s))
      assert_equal 1, out.size, "status #{s}"
      assert out[0].error, "status #{s} is an error"
      assert_nil out[0].head, "status #{s} sends no head"
      assert out[0].end
    end
    # Rack 2 accepts a String through to_i: the same range applies.
    %w[100 1000 20].each do |s|
      assert get(status_app(s))[0].error, "status #{s.inspect}"
    end
    assert get(status_app(100), opts: { rack3: true })[0].error
    assert get(status_app(1000), opts: { rack3: true })[0].error
    [200, 299, 599, 999].each do |s|
      out = get(status_app(s))
      assert_nil out[0].error, "status #{s}"
      assert_equal s, out[0].head.status
    end
  end

  # G17: multithread only with several app threads, multiprocess only with
  # several workers, run_once never (the runner serves many requests).
  def test_G17_flags_follow_threads_and_workers
    flags = lambda do |**opts|
      seen = nil
      get(->(env) { seen = env; [200, {}, []] }, opts: opts)
      [seen['rack.multithread'], seen['rack.multiprocess'], seen['rack.run_once']]
    end
    assert_equal [false, false, false], flags.call
    assert_equal [false, false, false], flags.call(threads: 1, workers: 1)
    assert_equal [true, false, false], flags.call(threads: 4, workers: 1)
    assert_equal [false, true, false], flags.call(threads: 1, workers: 3)
    assert_equal [true, true, false], flags.call(threads: 2, workers: 2, rack3: true)
  end

  # G21: Rack header and body Strings go out as their bytes, whatever their
  # encoding; body bytes are never transcoded or altered (CR, LF, NUL, 0xFF).
  def test_G21_header_and_body_strings_go_out_as_their_bytes
    utf8 = "caf\u00e9"
    latin1 = "caf\xe9".dup.force_encoding(Encoding::ISO_8859_1)
    utf16 = 'hi'.encode(Encoding::UTF_16LE)
    raw = "a\r\nb\nc\0\xff".b
    want = utf8.b + latin1.b + utf16.b + raw
    bodies = {
      'array' => [utf8, latin1, utf16, raw],
      'one chunk' => [want.dup.force_encoding(Encoding::UTF_8)],
      'each' => Enumerator.new { |y| [utf8, latin1, utf16, raw].each { |c| y << c } }
    }
    bodies.each do |name, body|
      app = ->(_env) { [200, { 'X-Utf8' => utf8, 'X-Latin1' => latin1 }, body] }
      out = get(app)
      assert_nil out.last.error, name
      got = hdrs(out[0]).to_h
      assert_equal utf8.b, got['X-Utf8'].b, name
      assert_equal latin1.b, got['X-Latin1'].b, name
      assert_equal want, body_of(out).b, name
    end
  end
end
