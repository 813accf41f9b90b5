# frozen_string_literal: true
# gRPC services: bridge.v1.Runner plus go-plugin's health, controller, stdio.
require 'grpc'
require 'bridge_runner/slot'
require 'bridge_runner/runner_pb'

module BridgeRunner
  VERSION = '0.1' unless const_defined?(:VERSION)

  # Pass-through marshalling for go-plugin's services (raw protobuf bytes).
  # Replies must be RawBytes instances: gRPC marshals with o.class.encode(o).
  class RawBytes < String
    def self.encode(s) = String.new(s, encoding: Encoding::BINARY)
    def self.decode(s) = s
  end

  class RunnerService
    include GRPC::GenericService
    self.marshal_class_method = :encode
    self.unmarshal_class_method = :decode
    self.service_name = 'bridge.v1.Runner'
    rpc :Describe, Bridge::V1::DescribeRequest, Bridge::V1::DescribeResponse
    # Slot frames are decoded and encoded by BridgeRunner::Wire, not by
    # google-protobuf (see wire.rb for why).
    rpc :Slot, stream(Wire::Request), stream(Wire::Bytes)
  end

  class Runner < RunnerService
    # running: returns the ids of the requests in the app (Describe.running).
    def initialize(slot_factory, describe, running = -> { [] })
      @slot_factory = slot_factory
      @describe = describe
      @running = running
    end

    def describe(_req, _call)
      Bridge::V1::DescribeResponse.new(**@describe, running: @running.call)
    end

    # A Slot stream. With ruby-grpc's own reader (below, the fallback) each
    # frame goes through an Enumerator#next (a Fiber switch), BidiCall's
    # debug-log strings and one run_batch per message each way. DirectStream
    # reads and writes on the call itself and sends a response's last frame
    # in the same batch as the read of the next request: one run_batch per
    # request instead of two.
    def slot(reqs, view)
      slot = @slot_factory.call
      if (active = DirectStream.active_call(view))
        view.send_initial_metadata
        io = DirectStream.new(active.instance_variable_get(:@call))
        status_sent = false
        begin
          slot.run(io) { |frame, fin| io.write(frame, fin) }
          io.flush
          status_sent = io.finish
        rescue GRPC::Core::CallError
          nil # the call went away (cancelled): nothing more can be sent
        ensure
          active.send(:set_input_stream_done) # lets gRPC close the call after the status
          active.send(:set_output_stream_done) if status_sent
        end
        return []
      end
      it = reqs.respond_to?(:next) ? reqs : reqs.to_enum
      Enumerator.new do |y|
        slot.run(it) { |f| y << f }
      end
    end
  end

  # Reads Wire::Requests from a server call and writes encoded
  # ResponseFrames to it. A frame written with fin (a response's last)
  # is held and goes out with the next read.
  class DirectStream
    OPS = GRPC::Core::CallOps
    RECV = { OPS::RECV_MESSAGE => nil }.freeze
    RECV_CLOSE = { OPS::RECV_CLOSE_ON_SERVER => nil }.freeze

    # The ActiveCall behind ruby-grpc's MultiReqView, or nil when this gRPC
    # is not shaped as expected (then the generic reader is used).
    def self.active_call(view)
      active = view.instance_variable_get(:@wrapped)
      return nil unless active.is_a?(GRPC::ActiveCall) && active.respond_to?(:set_input_stream_done, true)
      return nil unless active.instance_variable_get(:@call).is_a?(GRPC::Core::Call)
      return nil unless view.respond_to?(:send_initial_metadata)
      active
    rescue StandardError
      nil
    end

    def initialize(call)
      @call = call
      @pending = nil
    end

    # The next frame, or StopIteration at the end of the stream (the client
    # closed it or the call was cancelled).
    def next
      if @pending
        ops = { OPS::SEND_MESSAGE => @pending, OPS::RECV_MESSAGE => nil }
        @pending = nil
      else
        ops = RECV
      end
      msg = begin
        @call.run_batch(ops).message
      rescue GRPC::Core::CallError
        nil
      end
      ops[OPS::SEND_MESSAGE].clear unless ops.equal?(RECV)
      raise StopIteration, 'slot stream ended' if msg.nil?
      Wire.decode_request(msg)
    end

    def write(frame, fin = false)
      flush if @pending
      if fin
        @pending = frame
      else
        send_frame(frame)
      end
    end

    def flush
      return unless @pending
      frame = @pending
      @pending = nil
      send_frame(frame)
    end

    # Calls on_gone, from a thread of its own, once the call is cancelled or
    # its connection lost, for a request that waits for an app thread and
    # reads nothing meanwhile. Started the first time one waits; it lasts as
    # long as the stream and costs a request nothing. RECV_CLOSE_ON_SERVER
    # completes only when the call ends, and this stream sends its status
    # only in #finish: completing before that means the call is gone.
    def watch(&on_gone)
      @watch ||= Thread.new do
        Thread.current.name = 'bridge-slot-watch'
        begin
          @call.run_batch(RECV_CLOSE)
        rescue GRPC::Core::CallError
          nil
        end
        on_gone.call unless @finished
      end
    end

    # Ends the call with status OK once the stream is over. Only needed when
    # #watch took the call's one RECV_CLOSE_ON_SERVER: ruby-grpc's own
    # status batch holds another and fails (it logs to GRPC.logger, silent
    # unless the app set one); without a watch it sends the status as ever.
    # Returns true if it sent the status, once the watch is over (the call
    # may then be closed).
    def finish
      return false unless @watch
      @finished = true
      @call.run_batch(OPS::SEND_STATUS_FROM_SERVER => Struct::Status.new(GRPC::Core::StatusCodes::OK, 'OK', {}))
      !@watch.join(5).nil? # closing the call under a batch would be unsafe
    end

    private

    # gRPC has copied the frame once run_batch returns: free its buffer now
    # (a 64 KiB body would otherwise wait for the next GC, and the malloc
    # growth it counts would bring that GC sooner).
    def send_frame(frame)
      @call.run_batch(OPS::SEND_MESSAGE => frame)
      frame.clear
    end
  end

  class HealthService
    include GRPC::GenericService
    self.marshal_class_method = :encode
    self.unmarshal_class_method = :decode
    self.service_name = 'grpc.health.v1.Health'
    rpc :Check, RawBytes, RawBytes
  end

  class Health < HealthService
    def check(_req, _call) = RawBytes.new("\x08\x01".b)
  end

  class ControllerService
    include GRPC::GenericService
    self.marshal_class_method = :encode
    self.unmarshal_class_method = :decode
    self.service_name = 'plugin.GRPCController'
    rpc :Shutdown, RawBytes, RawBytes
  end

  class Controller < ControllerService
    def initialize(on_shutdown)
      @on_shutdown = on_shutdown
    end

    def shutdown(_req, _call)
      # Reply first: the server stops once the main thread sees the signal.
      Thread.new do
        sleep 0.1
        @on_shutdown.call
      end
      RawBytes.new(''.b)
    end
  end

  class StdioService
    include GRPC::GenericService
    self.marshal_class_method = :encode
    self.unmarshal_class_method = :decode
    self.service_name = 'plugin.GRPCStdio'
    rpc :StreamStdio, RawBytes, stream(RawBytes)
  end

  class Stdio < StdioService
    def stream_stdio(_req, _call) = []
  end
end
