#!/usr/bin/python3
"""bridge and its peers behind the same nginx, one at a time, in one run.

    bench/bench.py                 # full: every config x workload, 1,000 connections, scaling
    bench/bench.py --quick         # under 3 minutes: fewer configs, 2 s runs
    bench/bench.py --scaling       # req/s for 1, 2, 4 workers x concurrency 1..256
    bench/bench.py --only 'bridge-py|uwsgi-py' --workloads hello,echo
    bench/bench.py --list          # the plan, without running it
    bench/bench.py --report DIR|latest [--publish]   # re-render a run's table

For every configuration it starts the server and a private nginx on
127.0.0.1 (app on a unix socket), checks each workload's response, warms up,
then runs wrk while it samples CPU time (nginx, bridge's Go process, bridge's
runners or a peer's processes) and RSS/PSS from /proc. Results go to
bench/results/<UTC time>/: results.jsonl, table.md, logs, nginx configs, raw
wrk output. --publish copies a full run's table.md to bench/RESULTS.md.

Every wrk run is bounded (-d), servers are stopped by the pids this script
started, and only one measurement runs at a time on the machine: the script
holds /tmp/bridge-bench.lock (flock) while it measures.
Stdlib only; run with /usr/bin/python3.
"""
import argparse
import datetime
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import configs as C  # noqa: E402
from harness import procfs  # noqa: E402
from harness import report  # noqa: E402
from harness import sysinfo  # noqa: E402

BENCH = C.BENCH
ROOT = os.path.dirname(BENCH)
LOCK = "/tmp/bridge-bench.lock"
WRK_LUA = os.path.join(BENCH, "wrk.lua")

# --quick: which workloads each config runs (< 3 minutes in all)
QUICK = {
    "bridge-py w2": ["hello", "hello_c1", "big", "stream", "echo", "page", "conn1000"],
    "uwsgi-py p2": ["hello", "hello_c1", "big", "stream", "echo", "page"],
    "gunicorn sync w2": ["hello", "hello_c1"],
    "bridge-psgi w2": ["hello", "hello_c1", "big"],
    "uwsgi-psgi p2": ["hello", "hello_c1", "big"],
    "starman w2": ["hello"],
    "bridge-rack w2": ["hello", "hello_c1"],
    "uwsgi-rack p2 gc100": ["hello", "hello_c1"],
    "puma w2t4": ["hello"],
}
SCALING_CONFIGS = ["bridge-py w2", "uwsgi-py p2"]
SCALING_WORKERS = [1, 2, 4]
SCALING_CONNS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted("stopped by signal %d" % signum)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- plan


def plan_matrix(args):
    """[(config, [workloads])] for the matrix part of the run."""
    plan = []
    wanted = args.workloads.split(",") if args.workloads else None
    for cfg in C.CONFIGS:
        if args.only and not re.search(args.only, cfg.name):
            continue
        names = QUICK.get(cfg.name, []) if args.quick else C.ORDER
        names = [n for n in names if not wanted or n in wanted]
        wls = [C.WORKLOADS[n] for n in names
               if not C.WORKLOADS[n].bridge_only or cfg.kind == "bridge"]
        if wls:
            plan.append((cfg, wls))
    return plan


def plan_scaling(args):
    plan = []
    for cfg in C.CONFIGS:
        if cfg.name not in SCALING_CONFIGS:
            continue
        if args.only and not re.search(args.only, cfg.name):
            continue
        for n in SCALING_WORKERS:
            plan.append(cfg.with_workers(n))
    return plan


def check_tools(matrix, scaling, bridge):
    """Exit 2 naming what to install when a server or tool is missing."""
    need, pkgs = set(), set()
    cfgs = [c for c, _ in matrix] + scaling
    for tool in ("nginx", "wrk"):
        if C.missing(tool):
            need.add(tool)
            pkgs.add(C.PACKAGES[tool])
    for cfg in cfgs:
        for n in cfg.needs:
            if C.missing(n):
                need.add(n)
                pkgs.add(C.PACKAGES.get(n, n))
    if any(c.kind == "bridge" for c in cfgs) and not os.access(bridge, os.X_OK):
        need.add(bridge + " (run: make build)")
    langs_with_page = {c.lang for c, wls in matrix if any(w.app == "page" for w in wls)}
    for lang in sorted(langs_with_page):
        argv, pkg = C.PAGE_PROBES[lang]
        if subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            need.add("%s page app's framework" % lang)
            pkgs.add(pkg)
    if need:
        log("bench: missing: %s" % ", ".join(sorted(need)))
        if pkgs:
            log("bench: install with: make bench-deps   (apt-get install %s)" % " ".join(sorted(pkgs)))
        sys.exit(2)


# ---------------------------------------------------------------- lock


def _ancestor_holds_lock():
    """True when a parent process has the lock file open: someone ran us
    under `flock /tmp/bridge-bench.lock ...`, so the lock is ours already."""
    try:
        lock_id = os.stat(LOCK)
    except OSError:
        return False
    pid = os.getppid()
    while pid > 1:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    st = os.stat("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (lock_id.st_dev, lock_id.st_ino):
                    return True
            with open("/proc/%d/stat" % pid) as f:
                s = f.read()
            pid = int(s[s.rfind(")") + 2:].split()[1])
        except (OSError, ValueError):
            return False
    return False


def take_lock():
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        if _ancestor_holds_lock():
            os.close(fd)
            return None
    log("bench: waiting for %s (another benchmark is measuring)" % LOCK)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


# ---------------------------------------------------------------- nginx, wrk


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nginx_conf(run, cfg, sock, port):
    with open(os.path.join(BENCH, "nginx.conf.tmpl")) as f:
        conf = f.read()
    if cfg.loc == "uwsgi":
        loc = ["include /etc/nginx/uwsgi_params;",
               "uwsgi_modifier1 %d;" % C.MODIFIER1[cfg.lang],
               "uwsgi_pass app;"]
    else:
        loc = ["proxy_pass http://app;",
               "proxy_set_header Host $host;",
               "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"]
    subst = {
        "@LOCATION@": "\n".join("            " + line for line in loc),
        # workers must reach the socket in our 0700 run dir
        "@USER@": "user root;" if os.geteuid() == 0 else "",
        "@RUN@": run, "@SOCK@": sock, "@PORT@": str(port),
    }
    for k, v in subst.items():
        conf = conf.replace(k, v)
    for d in ("client_body", "proxy", "uwsgi", "fastcgi", "scgi"):
        os.makedirs(os.path.join(run, d), exist_ok=True)
    path = os.path.join(run, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def run_wrk(url, conns, threads, seconds, body_file=None, raw_path=None):
    env = dict(os.environ, BENCH_BODY_FILE=body_file or "")
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s",
            "--latency", "-s", WRK_LUA, url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = p.stdout.decode(errors="replace")
    if raw_path:
        with open(raw_path, "w") as f:
            f.write("$ %s\n%s" % (" ".join(argv), out))
    m = re.search(r"^BENCHJSON (\{.*\})$", out, re.M)
    if p.returncode != 0 or not m:
        raise RuntimeError("wrk failed (exit %d): %s" % (p.returncode, out[-400:]))
    res = json.loads(m.group(1))
    res["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res["wrk_argv"] = " ".join(argv)
    return res


def wait_quiet(limit_pct, max_wait):
    """Wait up to max_wait s for the machine to be nearly idle (other
    people's work would be measured too). Returns (busy %, waited s)."""
    t0 = time.monotonic()
    while True:
        a = procfs.machine_ticks()
        time.sleep(0.5)
        b = procfs.machine_ticks()
        busy = 100.0 * (b[0] - a[0]) / ((b[2] - a[2]) or 1)
        waited = time.monotonic() - t0
        if busy <= limit_pct or waited >= max_wait:
            return round(busy, 1), round(waited, 1)
        time.sleep(0.5)


def nginx_error_lines(path):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if re.search(r"\[(error|crit|alert|emerg)\]", line))
    except OSError:
        return 0


def log_tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- one server, several workloads


class Run:
    """The state of one bench run: options, output directory, records."""

    def __init__(self, args, out):
        self.args, self.out = args, out
        self.bridge = os.path.abspath(args.bridge)
        self.port = args.port or free_port()
        self.records = []
        self.failures = 0
        self.body_file = os.path.join(out, "body-1MiB.bin")
        for d in ("logs", "wrk", "nginx"):
            os.makedirs(os.path.join(out, d), exist_ok=True)

    def write(self, rec):
        self.records.append(rec)
        with open(os.path.join(self.out, "results.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")

    def serve(self, cfg, workloads, suite, durations):
        """Start cfg for the workloads' app, measure each workload, stop.
        durations = (warm-up s, measured s)."""
        app = workloads[0].app
        tag = re.sub(r"[^A-Za-z0-9]+", "_", "%s_%s_%s" % (suite, cfg.name, workloads[0].server))
        logp = os.path.join(self.out, "logs", tag + ".log")
        run = tempfile.mkdtemp(prefix="bridge-bench-")
        sock = os.path.join(run, "app.sock")
        server = ngx = None
        base = {"suite": suite, "config": cfg.name, "lang": cfg.lang, "kind": cfg.kind,
                "workers": cfg.workers, "app": app}
        pending = list(workloads)
        try:
            argv = cfg.argv(self.bridge, sock, app)
            server = procfs.Proc(argv, logp, cwd=run, stop_signal=cfg.stop)
            conf = nginx_conf(run, cfg, sock, self.port)
            ngx = procfs.Proc(["nginx", "-p", run, "-c", conf, "-e", os.path.join(run, "error.log")],
                              logp, cwd=run, stop_signal=signal.SIGTERM)
            t0 = time.monotonic()
            self.wait_ready(workloads[0], [server, ngx])
            start_s = time.monotonic() - t0
            if cfg.kind == "bridge":
                spec = {"nginx": (ngx.pid, "tree"), "go": (server.pid, "self"),
                        "runners": (server.pid, "below")}
            else:
                spec = {"nginx": (ngx.pid, "tree"), "app": (server.pid, "tree")}
            roles = procfs.Roles(spec)
            time.sleep(self.args.settle)  # let start-up work settle before the idle sample
            idle = procfs.MemorySampler(roles)
            idle.sample()
            self.write(dict(base, type="idle", server=workloads[0].server, argv=" ".join(argv),
                            ready_s=round(start_s, 2), mem=idle.finish(), ok=True))
            while pending:
                wl = pending.pop(0)
                rec = dict(base, type="measure", workload=wl.name, argv=" ".join(argv))
                try:
                    rec.update(self.measure(cfg, wl, roles, os.path.join(run, "error.log"),
                                            tag, durations))
                    rec["ok"] = True
                    log(report.progress_line(rec))
                except Interrupted:
                    raise
                except Exception as e:  # record it, go on with the next workload
                    if not server.alive():  # the rest cannot run either
                        pending.insert(0, wl)
                        raise RuntimeError("%s; the server exited with %s"
                                           % (e, server.p.returncode)) from e
                    rec.update(ok=False, error="%s: %s" % (type(e).__name__, e),
                               log_tail=log_tail(logp))
                    self.failures += 1
                    log("  %-20s %-9s FAILED: %s" % (cfg.name, wl.name, rec["error"]))
                self.write(rec)
        except Interrupted:
            raise
        except Exception as e:  # start-up failed: every workload left fails
            for wl in pending:
                self.failures += 1
                self.write(dict(base, type="measure", workload=wl.name, ok=False,
                                error="%s: %s" % (type(e).__name__, e), log_tail=log_tail(logp)))
            log("  %-20s FAILED: %s\n%s" % (cfg.name, e, log_tail(logp, 800)))
        finally:
            t0 = time.monotonic()
            if ngx:
                ngx.stop()
            if server:
                server.stop()
            log("  %-20s stopped in %.1f s" % (cfg.name, time.monotonic() - t0))
            for name in ("nginx.conf", "error.log"):
                src = os.path.join(run, name)
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(self.out, "nginx", tag + "." + name))
            shutil.rmtree(run, ignore_errors=True)

    def wait_ready(self, wl, procs, timeout=90.0):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for p in procs:
                if not p.alive():
                    raise RuntimeError("%s exited with %s before it was ready"
                                       % (os.path.basename(p.argv[0]), p.p.returncode))
            try:
                status, _, _ = C.http_request(self.port, "GET", "/hello" if wl.app == "micro"
                                              else wl.path, timeout=5)
                if status == 200:
                    return
                last = "status %d" % status
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError("not ready after %.0f s: %s" % (timeout, last))

    def measure(self, cfg, wl, roles, nginx_log, tag, durations):
        warmup, seconds = durations
        C.check(self.port, wl)
        url = "http://127.0.0.1:%d%s" % (self.port, wl.path)
        body = self.body_file if wl.post else None
        busy, waited = wait_quiet(self.args.quiet_pct, self.args.quiet_wait)
        if warmup > 0:
            run_wrk(url, wl.conns, wl.threads, warmup, body)
        errors0 = nginx_error_lines(nginx_log)
        window = procfs.CpuWindow(roles)
        sampler = procfs.MemorySampler(roles)
        window.start()
        sampler.start()
        try:
            res = run_wrk(url, wl.conns, wl.threads, seconds, body,
                          os.path.join(self.out, "wrk", "%s_%s.txt" % (tag, wl.name)))
        finally:
            cpu = window.stop()
            mem = sampler.finish()
        n = res["requests"]
        wall = res["duration_us"] / 1e6
        rec = {"conns": wl.conns, "threads": wl.threads, "duration_s": seconds,
               "warmup_s": warmup, "time": datetime.datetime.now(datetime.timezone.utc)
               .isoformat(timespec="seconds"), "pre_busy_pct": busy, "quiet_wait_s": waited}
        rec.update(res)
        rec["rps"] = n / wall if wall else 0
        rec["errors"] = sum(res[k] for k in ("err_connect", "err_read", "err_write",
                                             "err_status", "err_timeout"))
        rec["nginx_error_lines"] = nginx_error_lines(nginx_log) - errors0
        rec["bytes_per_req"] = res["bytes"] / n if n else 0
        if n and rec["bytes_per_req"] < wl.min_body:
            raise RuntimeError("responses average %.0f bytes, want at least %d"
                               % (rec["bytes_per_req"], wl.min_body))
        tick_us = 1e6 / procfs.CLK_TCK
        rec["cpu_us_per_req"] = {role: t * tick_us / n if n else None
                                 for role, t in cpu["ticks"].items()}
        rec["cpu_us_per_req"]["wrk"] = res["wrk_cpu_s"] * 1e6 / n if n else None
        ours = (sum(cpu["ticks"].values()) + cpu["harness_ticks"]
                + res["wrk_cpu_s"] * procfs.CLK_TCK)
        rec["other_cpu_pct"] = max(0.0, 100.0 * (cpu["machine_busy"] - ours) / cpu["machine_total"])
        rec["machine_busy_pct"] = 100.0 * cpu["machine_busy"] / cpu["machine_total"]
        rec["steal_pct"] = 100.0 * cpu["steal"] / cpu["machine_total"]
        rec["other_top"] = cpu["other_top"]
        rec["mem"] = mem
        return rec


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="the < 3 minute subset, 2 s runs")
    ap.add_argument("--scaling", action="store_true",
                    help="only the scaling table (workers x concurrency)")
    ap.add_argument("--no-scaling", action="store_true", help="full run without the scaling table")
    ap.add_argument("--only", help="regex on config names")
    ap.add_argument("--workloads", help="comma list among " + ",".join(C.ORDER))
    ap.add_argument("--duration", type=int, help="measured wrk seconds (full 10, quick 2)")
    ap.add_argument("--warmup", type=int, help="warm-up wrk seconds (full 2, quick 1)")
    ap.add_argument("--scaling-duration", type=int, default=5, help="measured s per scaling step")
    ap.add_argument("--quiet-pct", type=float, default=20.0,
                    help="before each run wait until the machine is at most this busy ...")
    ap.add_argument("--quiet-wait", type=float, help="... for at most this many s (full 10, quick 1)")
    ap.add_argument("--settle", type=float, help="s between a server's first answer and its "
                    "idle memory sample (full 1, quick 0.5)")
    ap.add_argument("--bridge", default=os.path.join(ROOT, "bin", "bridge"))
    ap.add_argument("--port", type=int, default=0, help="nginx port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--out", help="results directory (default bench/results/<UTC time>)")
    ap.add_argument("--publish", action="store_true",
                    help="copy the table of this full run (or of --report) to bench/RESULTS.md")
    ap.add_argument("--report", metavar="DIR", help="re-render DIR's table.md; 'latest' = newest full run")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    args = ap.parse_args()

    if args.report:
        return rerender(args)

    suite = "quick" if args.quick else ("scaling" if args.scaling else "full")
    args.duration = args.duration or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.settle is None:
        args.settle = 0.5 if args.quick else 1.0
    if args.quiet_wait is None:
        args.quiet_wait = 1.0 if args.quick else 10.0
    matrix = [] if args.scaling else plan_matrix(args)
    scaling = plan_scaling(args) if (args.scaling or (suite == "full" and not args.no_scaling
                                                      and not args.workloads)) else []
    if args.list:
        for cfg, wls in matrix:
            print("%-20s %-45s %s" % (cfg.name, ",".join(w.name for w in wls),
                                      " ".join(cfg.argv(args.bridge, "SOCK", wls[0].app))))
        for cfg in scaling:
            print("%-20s scaling c=%s" % (cfg.name, ",".join(map(str, SCALING_CONNS))))
        print("about %.1f min" % (estimate(matrix, scaling, args) / 60))
        return 0
    if not matrix and not scaling:
        log("bench: nothing to run (check --only / --workloads)")
        return 2
    check_tools(matrix, scaling, args.bridge)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 20000):  # wrk -c1000 and nginx need the descriptors
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))

    lock = take_lock()
    started = time.time()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.abspath(args.out or os.path.join(BENCH, "results", stamp))
    os.makedirs(out, exist_ok=True)
    meta = {"suite": suite, "started": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"), "duration_s": args.duration, "warmup_s": args.warmup,
            "scaling_duration_s": args.scaling_duration, "settle_s": args.settle,
            "argv": sys.argv[1:],
            "machine": sysinfo.machine(), "versions": sysinfo.versions(ROOT)}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    run = Run(args, out)
    with open(run.body_file, "wb") as f:
        f.write(os.urandom(C.ECHO_SIZE))
    log("bench: %s run, about %.1f min, results in %s"
        % (suite, estimate(matrix, scaling, args) / 60, out))
    status = 0
    try:
        for cfg, wls in matrix:
            groups = []
            for wl in wls:
                if not groups or groups[-1][0].server != wl.server:
                    groups.append([wl])
                else:
                    groups[-1].append(wl)
            for g in groups:
                run.serve(cfg, g, "matrix", (args.warmup, args.duration))
        for cfg in scaling:
            steps = [C.Workload("c%d" % c, "micro", "/hello", c, threads=min(2, c),
                                min_body=len(C.HELLO)) for c in SCALING_CONNS]
            run.serve(cfg, steps, "scaling", (1, args.scaling_duration))
    except Interrupted as e:
        log("bench: %s; stopping what it started" % e)
        status = 130
    finally:
        procfs.stop_all()
        if os.path.exists(run.body_file):
            os.remove(run.body_file)
        if lock is not None:
            os.close(lock)
    meta["wall_s"] = round(time.time() - started, 1)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    text = report.render(meta, run.records)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    log("bench: %d measurements, %d failed, %.0f s; results: %s"
        % (sum(1 for r in run.records if r["type"] == "measure"), run.failures,
           meta["wall_s"], out))
    if args.publish and status == 0:
        publish(out, meta)
    return status or (1 if run.failures else 0)


def estimate(matrix, scaling, args):
    per = args.warmup + args.duration + 1.0
    starts = sum(len({w.server for w in wls}) for _, wls in matrix) + len(scaling)
    return (sum(len(wls) for _, wls in matrix) * per + starts * (1.0 + args.settle)
            + len(scaling) * len(SCALING_CONNS) * (args.scaling_duration + 2.0))


def publish(out, meta):
    if meta["suite"] != "full":
        log("bench: --publish takes a full run; %s is a %s run" % (out, meta["suite"]))
        return
    dst = os.path.join(BENCH, "RESULTS.md")
    shutil.copy(os.path.join(out, "table.md"), dst)
    log("bench: wrote %s" % dst)


def rerender(args):
    out = args.report
    if out == "latest":
        base = os.path.join(BENCH, "results")
        full = []
        for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            try:
                with open(os.path.join(base, d, "meta.json")) as f:
                    if json.load(f).get("suite") == "full":
                        full.append(os.path.join(base, d))
            except (OSError, ValueError):
                continue
        if not full:
            log("bench: no full run under %s" % base)
            return 2
        out = full[-1]
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(out, "results.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    text = report.render(meta, records)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    if args.publish:
        publish(out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
