# frozen_string_literal: true
# The Rack runner's per-request work without gRPC: a Slot serving hello (or
# 64 KiB) requests from encoded RequestFrames, as gRPC hands them over, to
# encoded ResponseFrames. Prints objects allocated and CPU µs per request.
#
#   ruby ruby/bench/hotpath.rb                      # hello, this tree's lib
#   ruby ruby/bench/hotpath.rb --big                # 64 KiB body
#   ruby ruby/bench/hotpath.rb --lib /other/ruby/lib    # another version
#   ruby --yjit ruby/bench/hotpath.rb
require 'optparse'

opts = { lib: File.expand_path('../lib', __dir__), n: 20_000, big: false }
OptionParser.new do |o|
  o.on('--lib DIR') { |v| opts[:lib] = v }
  o.on('--requests N', Integer) { |v| opts[:n] = v }
  o.on('--big') { opts[:big] = true }
end.parse!(ARGV)
$LOAD_PATH.unshift(opts[:lib])
require 'bridge_runner/log'
require 'bridge_runner/slot'
require 'bridge_runner/runner_pb'
BridgeRunner::Log.io = File.open(File::NULL, 'w')
V1 = Bridge::V1

# The vars bridge's HTTP front sends for `wrk http://127.0.0.1:PORT/hello`.
VARS = { 'REQUEST_METHOD' => 'GET', 'SCRIPT_NAME' => '', 'PATH_INFO' => '/hello', 'QUERY_STRING' => '',
         'REQUEST_URI' => '/hello', 'SERVER_PROTOCOL' => 'HTTP/1.1', 'SERVER_NAME' => '127.0.0.1',
         'SERVER_PORT' => '29999', 'REMOTE_ADDR' => '127.0.0.1', 'REMOTE_PORT' => '41206',
         'REQUEST_SCHEME' => 'http', 'HTTP_HOST' => '127.0.0.1:29999', 'HTTP_ACCEPT' => '*/*',
         'HTTP_USER_AGENT' => 'wrk' }.freeze
head = V1::RequestHead.new(request_id: '1ab891b0ce6de962af1c94a1', url_scheme: 'http', content_length: 0,
                           vars: VARS.map { |k, v| V1::Var.new(name: k.b, value: v.b) })
BYTES = V1::RequestFrame.encode(V1::RequestFrame.new(head: head, end: true))
BODY = opts[:big] ? ('0123456789abcdef' * 4096).b.freeze : 'Hello, World!'.b.freeze
app = ->(_env) { [200, { 'Content-Type' => 'text/plain', 'Content-Length' => BODY.bytesize.to_s }, [BODY]] }
slot = BridgeRunner::Slot.new(app, rack3: false)
wire = defined?(BridgeRunner::Wire) # versions before wire.rb used protobuf objects both ways

run = lambda do |k|
  i = 0
  if wire
    src = Enumerator.new { |y| y << BridgeRunner::Wire::Request.decode(BYTES) while (i += 1) <= k }
    # As DirectStream: gRPC copies the frame, then its buffer is freed.
    slot.run(src) do |f, _fin|
      f.class.encode(f).to_s
      f.clear
    end
  else
    src = Enumerator.new { |y| y << V1::RequestFrame.decode(BYTES) while (i += 1) <= k }
    slot.run(src) { |f| V1::ResponseFrame.encode(f) }
  end
end
run.call(2000)
GC.start
a0 = GC.stat(:total_allocated_objects)
g0 = GC.stat(:time)
t0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
run.call(opts[:n])
t1 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
a1 = GC.stat(:total_allocated_objects)
g1 = GC.stat(:time)
n = opts[:n].to_f
printf("%s%s: %.1f objects/request, %.1f µs CPU/request (GC %.1f µs)\n", opts[:lib], opts[:big] ? ' (64 KiB)' : '',
       (a1 - a0) / n, (t1 - t0) * 1e6 / n, (g1 - g0) * 1e3 / n)
