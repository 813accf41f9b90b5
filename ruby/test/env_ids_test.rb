# frozen_string_literal: true
require_relative 'helper'
require 'rack'
require 'rack/lint'

# R5, R7, R12, R13 by name: the keys a Rack server must set, or must not.
class EnvIdsTest < Minitest::Test
  include SlotHelpers

  def seen_env(rack3: false, **kw)
    seen = nil
    app = lambda do |env|
      seen = env
      [200, {}, []]
    end
    out = get(app, opts: { rack3: rack3 }, **kw)
    assert_nil out.last.error
    seen
  end

  def test_R5_server_protocol_always_set_and_well_formed
    [false, true].each do |rack3|
      env = seen_env(rack3: rack3)
      assert_match(%r{\AHTTP/\d(\.\d)?\z}, env['SERVER_PROTOCOL'], "rack3=#{rack3}")
    end
    # A missing SERVER_PROTOCOL var is filled in, never left out.
    env = seen_env(vars: { 'SERVER_PROTOCOL' => '' })
    assert_match(%r{\AHTTP/\d(\.\d)?\z}, env['SERVER_PROTOCOL'])
  end

  def test_R7_url_scheme_follows_the_head
    assert_equal 'http', seen_env(scheme: 'http')['rack.url_scheme']
    assert_equal 'https', seen_env(scheme: 'https')['rack.url_scheme']
  end

  def test_R12_R13_no_early_hints_no_protocol
    [false, true].each do |rack3|
      env = seen_env(rack3: rack3)
      refute env.key?('rack.early_hints'), "rack3=#{rack3}"
      refute env.key?('rack.protocol'), "rack3=#{rack3}"
    end
  end

  def test_R13_rack_protocol_response_header_stripped
    app = ->(_env) { [200, { 'content-type' => 'text/plain', 'rack.protocol' => 'websocket' }, ['ok']] }
    out = get(app, opts: { rack3: true })
    assert_nil out.last.error
    names = out.first.head.headers.map { |h| h.name.downcase }
    refute_includes names, 'rack.protocol'
    assert_equal 'ok', body_of(out)
  end
end

# R1: the mode comes from Rack::RELEASE (Debian 12: 2.2.x → Rack 2 mode),
# unless BRIDGE_RACK_SPEC forces it.
class ModeDetectionTest < Minitest::Test
  def with_spec(value)
    old = ENV['BRIDGE_RACK_SPEC']
    value.nil? ? ENV.delete('BRIDGE_RACK_SPEC') : ENV['BRIDGE_RACK_SPEC'] = value
    yield
  ensure
    old.nil? ? ENV.delete('BRIDGE_RACK_SPEC') : ENV['BRIDGE_RACK_SPEC'] = old
  end

  def test_R1_mode_from_rack_release
    with_spec(nil) do
      assert_equal Gem::Version.new(Rack::RELEASE) >= Gem::Version.new('3'), BridgeRunner.rack3?
    end
    with_spec('3') { assert BridgeRunner.rack3? }
    with_spec('2') { refute BridgeRunner.rack3? }
  end
end
