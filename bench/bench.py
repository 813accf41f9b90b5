#!/usr/bin/python3
"""bridge and its peers behind the same nginx, one at a time, in one run.

    bench/bench.py                 # full: every config x workload, 1,000 connections, scaling
    bench/bench.py --quick         # under 3 minutes: fewer configs, 2 s runs
    bench/bench.py --scaling       # req/s for 1, 2, 4 workers x concurrency 1..256
    bench/bench.py --transport     # bench/slotload: each runner's Slot transport, 1 and 8 slots
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
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import configs as C  # noqa: E402
from harness import procfs  # noqa: E402
from harness.measure import Interrupted, Run, log  # noqa: E402
from harness import report  # noqa: E402
from harness import sysinfo  # noqa: E402
from harness import transport  # noqa: E402

BENCH = C.BENCH
ROOT = os.path.dirname(BENCH)
LOCK = "/tmp/bridge-bench.lock"

# --quick: which workloads each config runs (< 3 minutes in all)
QUICK = {
    "bridge-py w2": ["hello", "hello_c1", "big", "stream", "echo", "page", "conn1000"],
    "bridge-py-http w2": ["hello", "hello_c1", "page"],
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


def _on_signal(signum, _frame):
    raise Interrupted("stopped by signal %d" % signum)


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
               if (not C.WORKLOADS[n].bridge_only or cfg.kind == "bridge")
               and (cfg.workloads is None or n in cfg.workloads)]
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


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="the < 3 minute subset, 2 s runs")
    ap.add_argument("--scaling", action="store_true",
                    help="only the scaling table (workers x concurrency)")
    ap.add_argument("--no-scaling", action="store_true", help="full run without the scaling table")
    ap.add_argument("--transport", action="store_true",
                    help="only the runner transport table (bench/slotload; --only matches its "
                    "runner labels)")
    ap.add_argument("--no-transport", action="store_true", help="full run without the transport table")
    ap.add_argument("--transport-duration", type=int, default=5, help="measured s per transport run")
    ap.add_argument("--slotload", default=os.path.join(ROOT, "bin", "slotload"),
                    help="the transport client (make bench-transport builds it)")
    ap.add_argument("--only", help="regex on config names")
    ap.add_argument("--workloads", help="comma list among " + ",".join(C.ORDER))
    ap.add_argument("--duration", type=int, help="measured wrk seconds (full 10, quick 2)")
    ap.add_argument("--warmup", type=int, help="warm-up wrk seconds (full 2, quick 1)")
    ap.add_argument("--scaling-duration", type=int, default=5, help="measured s per scaling step")
    ap.add_argument("--quiet-pct", type=float, default=20.0,
                    help="before each run wait until the machine is at most this busy ...")
    ap.add_argument("--quiet-wait", type=float, help="... for at most this many s (full 10, quick 1)")
    ap.add_argument("--retry-noisy", type=int,
                    help="measure again, up to N times, while other processes used more than "
                    "10%% of the CPUs; the quietest attempt counts (full 1, quick 0)")
    ap.add_argument("--settle", type=float, help="s between a server's first answer and its "
                    "idle memory sample (full 1, quick 0.5)")
    ap.add_argument("--bridge", default=os.path.join(ROOT, "bin", "bridge"))
    ap.add_argument("--port", type=int, default=0, help="nginx port on 127.0.0.1 (default 18580; any free one if taken)")
    ap.add_argument("--out", help="results directory (default bench/results/<UTC time>)")
    ap.add_argument("--publish", action="store_true",
                    help="copy the table of this full run (or of --report) to bench/RESULTS.md")
    ap.add_argument("--report", metavar="DIR", help="re-render DIR's table.md; 'latest' = newest full run")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    args = ap.parse_args()

    if args.report:
        return rerender(args)

    suite = ("quick" if args.quick else "scaling" if args.scaling
             else "transport" if args.transport else "full")
    args.duration = args.duration or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.retry_noisy is None:
        args.retry_noisy = 0 if args.quick else 1
    if args.settle is None:
        args.settle = 0.5 if args.quick else 1.0
    if args.quiet_wait is None:
        args.quiet_wait = 1.0 if args.quick else 10.0
    matrix = [] if args.scaling or args.transport else plan_matrix(args)
    scaling = plan_scaling(args) if (args.scaling or (suite == "full" and not args.no_scaling
                                                      and not args.workloads)) else []
    tplan = (transport.plan(args.only if args.transport else None)
             if args.transport or (suite == "full" and not args.no_transport and not args.workloads
                                   and not args.only) else [])
    if args.list:
        for cfg, wls in matrix:
            print("%-20s %-45s %s" % (cfg.name, ",".join(w.name for w in wls),
                                      " ".join(cfg.argv(args.bridge, "SOCK", wls[0].app))))
        for cfg in scaling:
            print("%-20s scaling c=%s" % (cfg.name, ",".join(map(str, SCALING_CONNS))))
        for label, spec, _, env, k in tplan:
            print("%-20s transport slots=%d %s %s" % (label, k, spec,
                                                      " ".join("%s=%s" % e for e in env.items())))
        print("about %.1f min" % (estimate(matrix, scaling, args, tplan) / 60))
        return 0
    if not matrix and not scaling and not tplan:
        log("bench: nothing to run (check --only / --workloads)")
        return 2
    check_tools(matrix, scaling, args.bridge)
    if tplan and not os.access(args.slotload, os.X_OK):
        log("bench: missing: %s (run: make bench-transport, or go build -o bin/slotload "
            "./bench/slotload)" % args.slotload)
        return 2

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 20000):  # wrk -c1000 and nginx need the descriptors
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))

    t_lock = time.time()
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
    # Measure the binaries as they are now: other people rebuild bin/bridge
    # while a run goes on, which would change the runner shims (embedded in
    # it) between one configuration and the next.
    bindir = tempfile.mkdtemp(prefix="bridge-bench-bin-")
    meta["binaries"] = {}
    for attr, used in (("bridge", any(c.kind == "bridge" for c, _ in matrix) or scaling),
                       ("slotload", tplan)):
        src = getattr(args, attr)
        if used and os.path.exists(src):
            dst = os.path.join(bindir, attr)
            shutil.copy2(src, dst)
            with open(dst, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
            meta["binaries"][attr] = {"path": src, "sha256": digest, "mtime": datetime.datetime
                                      .fromtimestamp(os.path.getmtime(src), datetime.timezone.utc)
                                      .isoformat(timespec="seconds")}
            setattr(args, attr, dst)
    run = Run(args, out)
    with open(run.body_file, "wb") as f:
        f.write(os.urandom(C.ECHO_SIZE))
    log("bench: %s run, about %.1f min, results in %s"
        % (suite, estimate(matrix, scaling, args, tplan) / 60, out))
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
        for label, spec, lang, env, k in tplan:
            rec = None
            for attempt in range(1, args.retry_noisy + 2):  # the quietest attempt counts
                r = transport.run_one(args.slotload, label, spec, lang, env, k,
                                      args.transport_duration, 1, out, args)
                r["attempt"] = attempt
                if rec is None or (r["ok"] and (not rec["ok"] or r.get("other_cpu_pct", 0)
                                                < rec.get("other_cpu_pct", 0))):
                    rec = r
                if not r["ok"] or r.get("other_cpu_pct", 0) <= report.NOISY_PCT:
                    break
                log(transport.progress_line(r) + "  noisy, measuring again")
            if not rec["ok"]:
                run.failures += 1
            run.write(rec)
            log(transport.progress_line(rec))
    except Interrupted as e:
        log("bench: %s; stopping what it started" % e)
        status = 130
    finally:
        procfs.stop_all()
        shutil.rmtree(bindir, ignore_errors=True)
        if os.path.exists(run.body_file):
            os.remove(run.body_file)
        if lock is not None:
            os.close(lock)
    meta["wall_s"] = round(time.time() - started, 1)
    meta["lock_wait_s"] = round(started - t_lock, 1)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    text = report.render(meta, run.records)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    log("bench: %d measurements, %d failed, %.0f s (after %.0f s waiting for the lock); "
        "results: %s" % (sum(1 for r in run.records if r["type"] in ("measure", "transport")),
                                   run.failures,
                         meta["wall_s"], meta["lock_wait_s"], out))
    if args.publish and status == 0:
        publish(out, meta)
    return status or (1 if run.failures else 0)


def estimate(matrix, scaling, args, tplan=()):
    per = args.warmup + args.duration + 1.0
    starts = sum(len({w.server for w in wls}) for _, wls in matrix) + len(scaling)
    return (sum(len(wls) for _, wls in matrix) * per + starts * (1.0 + args.settle)
            + len(scaling) * len(SCALING_CONNS) * (args.scaling_duration + 2.0)
            + len(tplan) * (args.transport_duration + 3.0))


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
