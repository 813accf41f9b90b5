# frozen_string_literal: true
# The runner's services on the native transport (h2.rb), and the loop that
# serves Slot requests in arrival order: on the pumping thread itself with
# one app thread, or handed from one I/O thread to N app threads.
require 'bridge_runner/h2'
require 'bridge_runner/slot'
require 'bridge_runner/runner_pb'

module BridgeRunner
  module Native
    Gone = BridgeRunner::StreamGone

    # A RequestFrame that could not be decoded.
    BadFrame = Struct.new(:why, :hex)

    # One Slot stream: the handler of its call (under the server lock) and
    # the reqs/out of its Slot (app thread).
    class SlotStream
      attr_reader :call, :inbox, :slot
      attr_accessor :busy, :queued

      def initialize(service, call, slot)
        @service = service
        @server = service.server
        @call = call
        @slot = slot
        @inbox = [] # [seq, frame, wire size]
        @busy = false
        @queued = false
        @pumped = 0.0
      end

      # --- the call's handler (under the lock, on the pumping thread)

      def message(_call, msg, size)
        frame = begin
          Wire.decode_request(msg)
        rescue StandardError => e
          BadFrame.new("#{e.class}: #{e.message}", msg.byteslice(0, 64).unpack1('H*'))
        end
        @inbox << [@service.next_seq, frame, size]
        @service.ready(self) unless @busy
      end

      def half_close(call)
        call.finish(H2::OK) if !@busy && @inbox.empty?
      end

      def closed(_call)
        @service.gone(self) unless @busy
      end

      # --- reqs for the Slot (app thread)

      # The next RequestFrame; StopIteration once the stream is over.
      def next
        entry = nil
        call = @call
        inbox = @inbox
        server = @server
        server.await(nil, may_pump: @service.may_pump) do
          if (entry = inbox.shift)
            call.consumed(entry[2])
            # A WINDOW_UPDATE it made leaves now: the pumping thread may
            # be in a select that does not watch for writing.
            server.flush_now(call.conn) unless call.conn.out.empty?
            true
          else
            call.closed || call.half_closed
          end
        end
        raise StopIteration, 'slot stream ended' unless entry
        entry[1]
      end

      # Sends one encoded ResponseFrame. A response's last frame (fin) is
      # written without waiting; any other waits until it has left, so
      # that a streaming app is held back by Go's window and learns of a
      # cancel. Raises Gone if the stream is gone.
      def write(frame, fin = false)
        call = @call
        server = @server
        server.lock.synchronize do
          raise Gone, 'the slot stream is gone' if call.closed
          call.send_message(frame)
          # One app thread: a response's last frame waits in the output
          # buffer until the loop runs out of ready requests (Server#pump
          # writes first), so that a batch of pipelined responses leaves in
          # one write. Any other frame leaves now.
          server.flush_now(call.conn) unless fin && @service.may_pump
        end
        frame.clear
        return if fin
        # Take in what Go sent meanwhile (a RST_STREAM above all), at most
        # every 2 ms: a streaming app's chunks do not each cost a select.
        if @service.may_pump
          now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          if now - @pumped > 0.002
            @pumped = now
            server.try_pump(0)
          end
        end
        server.await(nil, may_pump: @service.may_pump) do
          call.closed || (!call.blocked? && call.conn.out.empty?)
        end
        raise Gone, 'the slot stream is gone' if call.closed
      end

      # Writes a held last frame now (the app has work to do after the
      # response: body close, rack.response_finished).
      def flush
        @server.lock.synchronize { @server.flush_now(@call.conn) unless @call.conn.dead || @call.conn.out.empty? }
      end
    end

    # go-plugin's stdio stream: empty, ended when the client half-closes.
    class EmptyStream
      def open(call) = (call.handler = self)
      def message(_call, _msg, _size) = nil
      def half_close(call) = call.finish(H2::OK)
      def closed(_call) = nil
    end

    class SlotRoute
      def initialize(service) = (@service = service)
      def open(call) = @service.open_slot(call)
    end

    class Service
      attr_reader :server, :may_pump

      # slot_factory: makes a Slot per stream; describe: DescribeResponse
      # fields; running: the ids in the app; grace: drain seconds.
      def initialize(slot_factory:, describe:, running:, threads:, grace:)
        @slot_factory = slot_factory
        @threads = threads
        @grace = grace
        @seq = 0
        @ready = []
        @stop = nil
        @stop_seq = nil
        @busy = 0
        @may_pump = threads == 1
        @in_app_since = nil
        routes = {
          '/grpc.health.v1.Health/Check' => proc { "\x08\x01".b },
          '/plugin.GRPCController/Shutdown' => proc do
            Log.info('shutdown requested by bridge')
            request_stop('shutdown')
            ''.b
          end,
          '/plugin.GRPCStdio/StreamStdio' => EmptyStream.new,
          '/bridge.v1.Runner/Describe' => proc do
            Bridge::V1::DescribeResponse.encode(Bridge::V1::DescribeResponse.new(**describe, running: running.call))
          end,
          '/bridge.v1.Runner/Slot' => SlotRoute.new(self)
        }
        @server = H2::Server.new(routes)
        @lock = @server.lock
        @work = ConditionVariable.new
      end

      def listen(dir) = @server.listen(dir)

      # Drain and exit (SIGTERM, Shutdown, bridge.retire). Safe in a trap.
      def request_stop(why)
        @stop ||= why
        @server.wake
      end

      # --- under the lock

      def next_seq = (@seq += 1)

      def open_slot(call)
        call.handler = SlotStream.new(self, call, @slot_factory.call)
      end

      def ready(ss)
        return if ss.queued || ss.busy
        ss.queued = true
        @ready << ss
        @work.signal if @threads > 1
      end

      # The stream went away while no app thread served it: requests it
      # held never reach the app.
      def gone(ss)
        @ready.delete(ss) if ss.queued
        ss.queued = false
        while (e = ss.inbox.shift)
          f = e[1]
          Log.info('request cancelled before it started', request_id: f.head.request_id) if f.is_a?(Wire::Request) && f.head
        end
      end

      # The stream whose waiting frame came first (only those that had
      # arrived by the stop, when stopping).
      def take_ready
        best = nil
        bseq = nil
        @ready.each do |ss|
          s = ss.inbox[0][0]
          next if @stop_seq && s > @stop_seq
          if bseq.nil? || s < bseq
            best = ss
            bseq = s
          end
        end
        return nil unless best
        @ready.delete(best)
        best.queued = false
        best.busy = true
        @busy += 1
        best
      end

      # --- serving

      # Serves one request of ss (taken by take_ready). App thread.
      def serve(ss)
        entry = @lock.synchronize do
          e = ss.inbox.shift
          ss.call.consumed(e[2]) if e
          e
        end
        frame = entry && entry[1]
        keep = true
        if frame.is_a?(BadFrame)
          Log.error("undecodable RequestFrame (#{frame.why})", kind: 'internal', bytes: frame.hex)
          ss.write(Wire.response(error: ['internal', "undecodable RequestFrame: #{frame.why}"], fin: true), true)
        elsif frame.nil? || frame.head.nil?
          # Stray body/end frames of a finished request.
        else
          @in_app_since = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          begin
            keep = ss.slot.handle(frame, ss) { |f, fin| ss.write(f, fin) }
          ensure
            @in_app_since = nil
          end
        end
      rescue Gone, StopIteration
        nil
      rescue StandardError => e
        Log.error("internal error serving a request: #{e.class}: #{e.message}",
                  traceback: (e.backtrace || []).join("\n"), kind: 'internal')
      ensure
        @lock.synchronize do
          ss.busy = false
          @busy -= 1
          call = ss.call
          if call.closed
            gone(ss)
          elsif !keep
            # Retired: nothing more on this stream; it ends OK once Go
            # half-closes it.
            gone(ss)
            call.finish(H2::OK)
          elsif !ss.inbox.empty?
            ready(ss)
          elsif call.half_closed
            call.finish(H2::OK)
          end
          # One app thread: the loop writes before it waits (Server#pump).
          @server.flush_now(call.conn) unless call.conn.dead || @may_pump
          @server.changed!
        end
      end

      # Serves until stopped, then drains and closes. Returns when done.
      def run
        if @threads > 1
          workers = Array.new(@threads) { |i| Thread.new { worker(i) } }
          @server.await { @stop } until @stop
          drain_stop
          @lock.synchronize do
            @closing = true
            @work.broadcast
          end
          workers.each { |t| t.join(1) }
        else
          watchdog = Thread.new { watch }
          loop do
            ss = nil
            @server.await do
              (ss = take_ready) || (@stop && (!@stop_seq || nothing_ready? || past_deadline?))
            end
            if ss
              serve(ss)
            elsif !@stop_seq
              mark_stop
            else
              break
            end
          end
          @watch_stop = true
          watchdog.wakeup rescue nil
        end
        Log.info("stopping (#{@stop})")
        @server.close_all
      end

      private

      def nothing_ready?
        @ready.none? { |ss| ss.inbox[0][0] <= @stop_seq } && @busy.zero?
      end

      def past_deadline?
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > @deadline
      end

      # Requests Go has already sent are in flight from its side: take in
      # what the sockets hold, and serve up to there.
      def mark_stop
        Log.info('shutting down: finishing in-flight requests')
        @server.close_listener
        10.times { break unless @server.try_pump(0) }
        @lock.synchronize { @stop_seq = @seq }
        @deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + @grace
      end

      # With app threads: wait until the requests that had arrived by the
      # stop are served (or the grace is over).
      def drain_stop
        mark_stop
        until @lock.synchronize { nothing_ready? } || past_deadline?
          @server.try_pump(0.05) or sleep(0.01)
        end
      end

      def worker(i)
        Thread.current.name = "bridge-app-#{i}"
        loop do
          ss = @lock.synchronize do
            s = nil
            @work.wait(@lock, 1) until (s = take_ready) || @closing
            s
          end
          break unless ss
          serve(ss)
        end
      end

      # One app thread: while the app keeps it longer than 50 ms without
      # pumping (a slow request), this thread takes in and answers frames
      # (Describe, Health, cancels, other slots' requests).
      def watch
        Thread.current.name = 'bridge-watch'
        until @watch_stop
          sleep 0.05
          since = @in_app_since
          next unless since && Process.clock_gettime(Process::CLOCK_MONOTONIC) - since > 0.05
          while @in_app_since.equal?(since) && !@watch_stop
            @server.try_pump(0.05) or break
          end
        end
      end
    end
  end
end
