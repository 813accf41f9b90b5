#!/bin/bash
# The Rack runner as bridge runs it, under wrk: CPU µs per request of the
# runner process (and of bridge's Go process), objects allocated per request
# and GC time inside the runner, context switches, RSS at the end.
#
#   ruby/bench/runner.sh [SHIM_DIR] [PATH] [THREADS] [SECONDS] [CONNECTIONS]
#   ruby/bench/runner.sh ruby /hello 1 10 8
#   ruby/bench/runner.sh /tmp/old-ruby /big 1 10 8     # another shim version
#   THREADS_CPU=1 ruby/bench/runner.sh ...             # per-thread CPU as well
#   RUBYOPT='--yjit --yjit-exec-mem-size=32' ruby/bench/runner.sh ...
#
# One worker on bridge's HTTP front (no nginx), wrk -t1 after 2 s of
# warm-up. Holds /tmp/bridge-bench.lock while measuring (the machine is
# shared). The runner's pid comes from bridge's "worker ready" log line.
set -e
here=$(cd "$(dirname "$0")/../.." && pwd)
shim=$(cd "${1:-$here/ruby}" && pwd); path=${2:-/hello}; threads=${3:-1}; dur=${4:-10}; conns=${5:-8}
bridge=${BRIDGE:-$here/bin/bridge}
[ -x "$bridge" ] || { echo "build bridge first (make build) or set BRIDGE" >&2; exit 1; }
command -v wrk >/dev/null || { echo "apt-get install wrk" >&2; exit 1; }
tmp=$(mktemp -d); trap 'kill $bpid 2>/dev/null; rm -rf "$tmp"' EXIT
cat > "$tmp/config.ru" <<'RU'
HELLO = "Hello, World!".b.freeze
BIG = ("0123456789abcdef" * 4096).b.freeze
run lambda { |env|
  case env["PATH_INFO"]
  when "/big" then [200, { "Content-Type" => "application/octet-stream", "Content-Length" => "65536" }, [BIG]]
  when "/gc"
    s = GC.stat
    b = "#{s[:total_allocated_objects]} #{s[:count]} #{s[:time]}\n"
    [200, { "Content-Type" => "text/plain", "Content-Length" => b.bytesize.to_s }, [b]]
  else [200, { "Content-Type" => "text/plain", "Content-Length" => "13" }, [HELLO]]
  end
}
RU
exec 9>/tmp/bridge-bench.lock; flock 9
port=$((20000 + RANDOM % 10000))
"$bridge" serve --runner "exec:ruby $shim/bin/bridge-rack-runner --app config.ru" --chdir "$tmp" \
  --http 127.0.0.1:$port --workers 1 --threads "$threads" >"$tmp/log" 2>&1 &
bpid=$!
for _ in $(seq 200); do grep -q 'worker ready' "$tmp/log" && break; sleep 0.1; done
rpid=$(grep 'worker ready' "$tmp/log" | head -1 | sed 's/.*"pid":\([0-9]*\).*/\1/')
[ -n "$rpid" ] || { cat "$tmp/log" >&2; exit 1; }
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
csw() { cat /proc/$1/task/*/status | awk '/voluntary_ctxt_switches/{s+=$2} END{print s}'; }
thr() { for t in /proc/$1/task/*; do echo "${t##*/}:$(tr ' ' _ < $t/comm) $(awk '{print $14+$15}' $t/stat)"; done | sort; }
wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$port$path" >/dev/null
read -r a0 n0 g0 < <(curl -s "http://127.0.0.1:$port/gc")
r0=$(ticks $rpid); b0=$(ticks $bpid); c0=$(csw $rpid); thr $rpid > "$tmp/thr0"
out=$(wrk -t1 -c"$conns" -d"${dur}s" "http://127.0.0.1:$port$path")
r1=$(ticks $rpid); b1=$(ticks $bpid); c1=$(csw $rpid); thr $rpid > "$tmp/thr1"
read -r a1 n1 g1 < <(curl -s "http://127.0.0.1:$port/gc")
rss=$(awk '/VmRSS/{print $2}' /proc/$rpid/status)
n=$(echo "$out" | awk '/requests in/{print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
hz=$(getconf CLK_TCK)
awk -v p="$path" -v t="$threads" -v n="$n" -v rps="$rps" -v r=$((r1-r0)) -v b=$((b1-b0)) -v a=$((a1-a0)) \
    -v g=$((n1-n0)) -v gt=$((g1-g0)) -v rss="$rss" -v cs=$((c1-c0)) -v hz="$hz" 'BEGIN{
  printf "%s threads=%d: %d requests, %s req/s; runner %.0f µs CPU/req (GC %.1f µs, %d GCs), Go %.0f µs CPU/req; %.1f objects/req; %.2f context switches/req; runner RSS %.1f MiB\n",
    p, t, n, rps, r*1e6/hz/n, gt*1000/n, g, b*1e6/hz/n, a/n, cs/n, rss/1024 }'
echo "$out" | grep -E 'Non-2xx|Socket errors' || true
if [ -n "$THREADS_CPU" ]; then
  join "$tmp/thr0" "$tmp/thr1" | awk -v n="$n" -v hz="$hz" '{d=$3-$2; if (d>0) printf "  %-24s %6.1f µs/req\n", $1, d*1e6/hz/n}'
fi
