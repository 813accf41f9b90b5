# frozen_string_literal: true
require 'minitest/autorun'
require 'stringio'
require 'bridge_runner/log'
require 'bridge_runner/slot'
require 'bridge_runner/runner_pb'

BridgeRunner::Log.io = StringIO.new unless ENV['BRIDGE_TEST_LOGS']

module SlotHelpers
  V1 = Bridge::V1

  def head(path: '/', method: 'GET', query: '', vars: {}, request_id: 'rid-1', scheme: 'http', clen: 0)
    base = {
      'REQUEST_METHOD' => method, 'SCRIPT_NAME' => '', 'PATH_INFO' => path,
      'QUERY_STRING' => query, 'SERVER_NAME' => 'localhost', 'SERVER_PORT' => '8080',
      'SERVER_PROTOCOL' => 'HTTP/1.1', 'REQUEST_URI' => query.empty? ? path : "#{path}?#{query}",
      'REMOTE_ADDR' => '127.0.0.1', 'HTTP_HOST' => 'localhost:8080'
    }.merge(vars)
    V1::RequestHead.new(request_id: request_id, url_scheme: scheme, content_length: clen,
                        vars: base.map { |k, v| V1::Var.new(name: k.b, value: v.b) })
  end

  # Drives one Slot over fake request frames; returns the response frames.
  def run_slot(app, frames, **opts)
    out = []
    opts = { rack3: false }.merge(opts)
    BridgeRunner::Slot.new(app, **opts).run(wire(frames).each) { |f| out << unwire(f) }
    out
  end

  # RequestFrames as the Slot gets them from gRPC (through Wire).
  def wire(frames)
    frames.map { |f| BridgeRunner::Wire.decode_request(V1::RequestFrame.encode(f)) }
  end

  # An encoded ResponseFrame the Slot sent, as a protobuf object.
  def unwire(bytes)
    V1::ResponseFrame.decode(bytes)
  end

  def get(app, **kw)
    opts = kw.delete(:opts) || {}
    run_slot(app, [V1::RequestFrame.new(head: head(**kw), end: true)], **opts)
  end

  def hdrs(frame)
    frame.head.headers.map { |h| [h.name, h.value] }
  end

  def body_of(frames)
    frames.map(&:body).join
  end
end
