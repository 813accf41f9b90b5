# frozen_string_literal: true
# gRPC services: bridge.v1.Runner plus go-plugin's health, controller, stdio.
require 'grpc'
require 'bridge_runner/slot'
require 'bridge_runner/runner_pb'

module BridgeRunner
  VERSION = '0.1'

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

    def slot(reqs, _call)
      it = reqs.respond_to?(:next) ? reqs : reqs.to_enum
      slot = @slot_factory.call
      Enumerator.new do |y|
        slot.run(it) { |f| y << f }
      end
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
