# frozen_string_literal: true
require 'minitest/autorun'
require 'bridge_runner/duration'

# BRIDGE_GRACE's format: every case of testdata/durations.txt, which a Go
# test checks against time.ParseDuration and the other shims read too.
class DurationsTest < Minitest::Test
  TABLE = File.expand_path('../../testdata/durations.txt', __dir__)

  def test_every_case_of_the_shared_table
    n = 0
    File.foreach(TABLE, mode: 'rb').with_index(1) do |line, no|
      line = line.chomp
      next if line.empty? || line.start_with?('#')

      text, want = line.split("\t", -1)
      n += 1
      if want == 'error'
        assert_raises(ArgumentError, "line #{no}: #{text.inspect}") { BridgeRunner::Duration.parse(text) }
      else
        assert_equal Integer(want), BridgeRunner::Duration.parse(text), "line #{no}: #{text.inspect}"
      end
    end
    assert_operator n, :>=, 40
  end
end
