#!/usr/bin/python3
"""Micro-benchmark of the Python shim behind bridge's HTTP front.

Starts `bridge serve --runner python:APP:application --http 127.0.0.1:PORT
--workers 1 --threads T` on one of the apps in python/bench/apps, drives it
with wrk, and reads the CPU time of the shim process and of bridge from
/proc/PID/stat before and after. Prints req/s and CPU microseconds per
request for each case, and the same as JSON lines with --json.

    flock /tmp/bridge-bench.lock /usr/bin/python3 python/bench/shim_bench.py \
        [--bridge bin/bridge] [--modes native] [--cases hello-t1,hello-t4,big-t1,echo-t1] \
        [--duration 10] [--passes 1]

--modes sets BRIDGE_PY_SERVER for the shim (native is the one server left;
the option stays for comparing another one while it is developed). The
bridge binary embeds the shim's source, so rebuild it (`make build`) after
changing python/.
Stdlib only; needs wrk (apt-get install wrk).
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK = os.sysconf("SC_CLK_TCK")

# name: (app module, --threads, wrk connections, POST body size or 0, expected body length)
CASES = {
    "hello-t1": ("hello", 1, 16, 0, 13),
    "hello-t4": ("hello", 4, 16, 0, 13),
    "big-t1": ("big", 1, 16, 0, 65536),
    "big-t4": ("big", 4, 16, 0, 65536),
    "echo-t1": ("echo", 1, 4, 1 << 20, 1 << 20),
    "echo-t4": ("echo", 4, 4, 1 << 20, 1 << 20),
}

LUA = r"""
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/octet-stream"
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def switches(pid):
    """Context switches of all the process's threads so far."""
    n = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if "ctxt_switches" in line:  # voluntary and nonvoluntary
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            ppid = int(s[s.rfind(")") + 2:].split()[1])
            if ppid != pid:
                continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"bridge_runner" in cmd:
            out.append(int(d))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, data=None, timeout=5):
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
        return r.read()


def run_case(bridge, mode, name, duration, tmp):
    app, threads, conns, post, want = CASES[name]
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    env = dict(os.environ)
    if mode:
        env["BRIDGE_PY_SERVER"] = mode
    env["BRIDGE_PYTHON"] = "/usr/bin/python3"
    log = open(os.path.join(tmp, "bridge-%s-%s.log" % (mode, name)), "wb")
    proc = subprocess.Popen(
        [bridge, "serve", "--runner", "python:%s:application" % app, "--chdir",
         os.path.join(HERE, "apps"), "--http", "127.0.0.1:%d" % port, "--workers", "1",
         "--threads", str(threads), "--log-level", "warn"],
        env=env, stdout=log, stderr=log)
    try:
        body = os.urandom(post) if post else None
        deadline = time.monotonic() + 30
        while True:
            try:
                got = get(url, body)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("bridge did not come up for %s %s (see %s)" % (mode, name, log.name))
                time.sleep(0.1)
        if len(got) != want or (body is not None and got != body):
            raise RuntimeError("%s %s: wrong response (%d bytes)" % (mode, name, len(got)))
        shims = children(proc.pid)
        if len(shims) != 1:
            raise RuntimeError("want one shim process, found %r" % shims)
        shim = shims[0]
        cmd = ["wrk", "-t2", "-c%d" % conns, "-d%ds" % duration, "-s", os.path.join(tmp, "r.lua"), url]
        wenv = dict(os.environ)
        if post:
            path = os.path.join(tmp, "body.bin")
            with open(path, "wb") as f:
                f.write(body)
            wenv["WRK_BODY_FILE"] = path
        # Warm-up: one second at the same load, not measured.
        subprocess.run(cmd[:3] + ["-d1s"] + cmd[4:], env=wenv, capture_output=True, check=True)
        s0, g0, x0 = ticks(shim), ticks(proc.pid), switches(shim)
        out = subprocess.run(cmd, env=wenv, capture_output=True, check=True, text=True).stdout
        s1, g1, x1 = ticks(shim), ticks(proc.pid), switches(shim)
        line = [l for l in out.splitlines() if l.startswith("WRKJSON ")][0]
        w = json.loads(line[len("WRKJSON "):])
        n = max(w["requests"], 1)
        return {
            "mode": mode or "default", "case": name, "requests": w["requests"],
            "rps": round(w["requests"] / (w["duration_us"] / 1e6)),
            "shim_us": round((s1 - s0) / CLK * 1e6 / n, 1),
            "go_us": round((g1 - g0) / CLK * 1e6 / n, 1),
            "switches": round((x1 - x0) / n, 2),
            "p50_us": w["p50_us"], "p99_us": w["p99_us"],
            "errors": w["errors"] + w["non2xx"],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bridge", default=os.path.join(ROOT, "bin", "bridge"))
    p.add_argument("--modes", default="native", help="BRIDGE_PY_SERVER values ('' = unset)")
    p.add_argument("--cases", default="hello-t1,hello-t4,big-t1,echo-t1",
                   help="comma-separated, of: " + ",".join(CASES))
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="shimbench-")
    with open(os.path.join(tmp, "r.lua"), "w") as f:
        f.write(LUA)
    print("%-10s %-9s %8s %9s %7s %7s %8s %8s %6s" % ("mode", "case", "req/s", "shim µs", "Go µs",
                                                     "cs/req", "p50 µs", "p99 µs", "errors"), flush=True)
    for _ in range(args.passes):
        for name in args.cases.split(","):
            for mode in args.modes.split(","):
                r = run_case(args.bridge, mode, name, args.duration, tmp)
                if args.json:
                    print(json.dumps(r), flush=True)
                print("%-10s %-9s %8d %9.1f %7.1f %7.2f %8d %8d %6d" % (
                    r["mode"], r["case"], r["rps"], r["shim_us"], r["go_us"], r["switches"],
                    r["p50_us"], r["p99_us"], r["errors"]), flush=True)
    print("logs: %s" % tmp, file=sys.stderr)


if __name__ == "__main__":
    main()
