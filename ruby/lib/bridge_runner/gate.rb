# frozen_string_literal: true
# At most `threads` app calls at once, however many Slot streams bridge
# keeps open (BRIDGE_SLOTS): requests past the threads wait their turn here.
module BridgeRunner
  class Gate
    # One Slot's place in the queue, reused for each of its requests (a
    # Slot serves one request at a time). gone: its stream was cancelled.
    class Turn
      attr_accessor :state, :gone
      attr_reader :cv

      def initialize
        @cv = ConditionVariable.new
        @state = nil
        @gone = false
      end
    end

    def initialize(threads)
      @threads = threads
      @free = threads
      @queue = [] # waiting Turns, oldest first
      @lock = Mutex.new
    end

    # Returns true once the caller may call the app, false if the turn's
    # stream is gone (cancelled before or while it waited). Yields, under the
    # gate's lock, before the first wait: the caller starts watching its
    # stream there (see Slot#watch).
    def enter(turn)
      @lock.synchronize do
        return false if turn.gone
        if @free.positive?
          @free -= 1
          return true
        end
        yield if block_given?
        turn.state = :waiting
        @queue << turn
        turn.cv.wait(@lock) while turn.state == :waiting
        return false if turn.state == :cancelled
        return true unless turn.gone
        pass_on # cancelled after its turn came, before it woke
        false
      end
    end

    def leave
      @lock.synchronize { pass_on }
    end

    # The turn goes straight to the oldest waiter, so one that arrives in
    # between cannot take it first.
    def pass_on
      if (t = @queue.shift)
        t.state = :granted
        t.cv.signal
      else
        @free += 1
      end
    end
    private :pass_on

    # The turn's stream is gone (from its watch thread, DirectStream#watch):
    # a waiting request leaves without its turn; one in the app is left to
    # finish as any cancelled request.
    def cancel(turn)
      @lock.synchronize do
        turn.gone = true
        next unless turn.state == :waiting
        @queue.delete(turn)
        turn.state = :cancelled
        turn.cv.signal
      end
    end

    # True while a request holds a turn or waits for one (shutdown drain).
    def busy?
      @lock.synchronize { @free < @threads || !@queue.empty? }
    end
  end
end
