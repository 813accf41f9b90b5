# The soak's app (bench/soak) as plain Rack: the same routes and bytes as
# ../python/soak.py (see there). /stream and /big bodies yield each chunk
# from #each.
require "digest"

HELLO = "Hello, World!".b.freeze
PIECE = ("0123456789abcdef" * 4096).b.freeze # 64 KiB
MAX_KIB = 1 << 18

def soak_arg(env, name, default, most)
  m = /(?:^|&)#{name}=(\d+)/.match(env["QUERY_STRING"].to_s)
  m ? [m[1].to_i, most].min : default
end

class StreamBody
  def initialize(n) = @n = n

  def each
    @n.times { |i| yield(format("%04d", i % 10_000) + "x" * 1019 + "\n") }
  end
end

class BigBody
  def initialize(size) = @size = size

  def each
    left = @size
    while left.positive?
      part = left >= PIECE.bytesize ? PIECE : PIECE.byteslice(0, left)
      left -= part.bytesize
      yield part
    end
  end
end

ROUTES = {
  "/hello" => ->(_env) { [200, { "Content-Type" => "text/plain", "Content-Length" => "13" }, [HELLO]] },
  "/upload" => lambda { |env|
    input = env["rack.input"]
    digest = Digest::SHA256.new
    n = 0
    while (part = input.read(262_144))
      digest << part
      n += part.bytesize
    end
    body = "#{n} #{digest.hexdigest}"
    [200, { "Content-Type" => "text/plain", "Content-Length" => body.bytesize.to_s }, [body]]
  },
  "/stream" => lambda { |env|
    [200, { "Content-Type" => "text/plain", "X-Accel-Buffering" => "no" }, StreamBody.new(soak_arg(env, "n", 100, 100_000))]
  },
  "/big" => lambda { |env|
    size = soak_arg(env, "kib", 1024, MAX_KIB) * 1024
    [200, { "Content-Type" => "application/octet-stream", "Content-Length" => size.to_s }, BigBody.new(size)]
  },
}.freeze

run lambda { |env|
  route = ROUTES[env["PATH_INFO"]]
  next [404, { "Content-Type" => "text/plain", "Content-Length" => "10" }, ["not found\n"]] unless route
  route.call(env)
}
