# frozen_string_literal: true
require 'helper'
require 'bridge_runner/gate'

class GateTest < Minitest::Test
  Gate = BridgeRunner::Gate

  def test_turns_go_in_arrival_order_and_a_cancelled_waiter_leaves
    gate = Gate.new(1)
    assert gate.enter(Gate::Turn.new)
    order = Queue.new
    turns = Array.new(3) { Gate::Turn.new }
    threads = turns.each_with_index.map do |t, i|
      th = Thread.new do
        ok = gate.enter(t)
        order << [i, ok]
        gate.leave if ok
      end
      sleep 0.01 until t.state == :waiting # one after another
      th
    end
    gate.cancel(turns[1])
    threads[1].join(5)
    assert_equal [1, false], order.pop, 'a cancelled waiter leaves without a turn'
    gate.leave
    threads.each { |th| th.join(5) }
    assert_equal [[0, true], [2, true]], Array.new(2) { order.pop }, 'the rest in arrival order'
    refute gate.busy?
    refute gate.enter(turns[1]), 'a cancelled stream gets no turn, even a free one'
    assert gate.enter(turns[0]), 'the others still do'
  end

  def test_a_turn_given_to_a_stream_gone_meanwhile_goes_to_the_next
    gate = Gate.new(1)
    first, gone, next_one = Array.new(3) { Gate::Turn.new }
    assert gate.enter(first)
    got = {}
    waiters = [gone, next_one].map do |t|
      th = Thread.new { got[t] = gate.enter(t) }
      sleep 0.01 until t.state == :waiting
      th
    end
    # Both under the lock before the waiter runs: its turn came, then its
    # stream went.
    gate.instance_variable_get(:@lock).synchronize do
      gate.send(:pass_on)
      gone.gone = true
    end
    waiters.each { |th| th.join(5) }
    assert_equal [false, true], [got[gone], got[next_one]]
    gate.leave
    refute gate.busy?
  end
end
