# The bench's micro workloads as one Rack app, routed on PATH_INFO; the same
# bodies as micro.py (see there). /stream's body yields each chunk from #each.
HELLO = "Hello, World!".b.freeze
BIG = ("0123456789abcdef" * 4096).b.freeze
CHUNKS = (0..99).map { |i| (format("%04d", i) + "x" * 1019 + "\n").b.freeze }.freeze

class StreamBody
  def each
    CHUNKS.each { |c| yield c }
  end
end

ROUTES = {
  "/hello" => ->(_env) { [200, { "Content-Type" => "text/plain", "Content-Length" => "13" }, [HELLO]] },
  "/big" => ->(_env) { [200, { "Content-Type" => "application/octet-stream", "Content-Length" => "65536" }, [BIG]] },
  "/echo" => lambda { |env|
    body = env["rack.input"].read.to_s
    [200, { "Content-Type" => "application/octet-stream", "Content-Length" => body.bytesize.to_s }, [body]]
  },
  "/stream" => ->(_env) { [200, { "Content-Type" => "text/plain", "X-Accel-Buffering" => "no" }, StreamBody.new] },
}.freeze

run lambda { |env|
  route = ROUTES[env["PATH_INFO"]]
  next [404, { "Content-Type" => "text/plain", "Content-Length" => "10" }, ["not found\n"]] unless route
  route.call(env)
}
