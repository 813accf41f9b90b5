"""Running one server behind nginx and measuring it with wrk: the part of
bench.py that touches processes, sockets and /proc."""
import datetime
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

from . import configs as C
from . import procfs
from . import report

BENCH = C.BENCH
WRK_LUA = os.path.join(BENCH, "wrk.lua")


class Interrupted(Exception):
    """Raised from the SIGTERM/SIGINT handler so every finally: block runs."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- nginx, wrk


DEFAULT_PORT = 18580  # below the ephemeral range, so no client socket takes it


def pick_port(wanted):
    """wanted if 127.0.0.1 has it free, else any free port."""
    for port in (wanted, 0):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port on 127.0.0.1")


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
    upstream = []
    if cfg.loc == "proxy_keepalive":
        # HTTP/1.1 to the app and no "Connection: close": nginx keeps up to
        # 32 idle upstream connections per worker and reuses them
        upstream = ["keepalive 32;"]
        loc += ["proxy_http_version 1.1;", 'proxy_set_header Connection "";']
    subst = {
        "@UPSTREAM@": "\n".join("        " + line for line in upstream),
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
        self.port = None  # picked again for every server start
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
            self.port = pick_port(self.args.port or DEFAULT_PORT)
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
                    rec.update(self.measure_quietest(cfg, wl, roles, os.path.join(run, "error.log"),
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

    def measure_quietest(self, cfg, wl, roles, nginx_log, tag, durations):
        """measure(), again (up to --retry-noisy times) while the rest of the
        machine used more than report.NOISY_PCT of the CPUs; keeps the
        quietest attempt."""
        best = None
        for attempt in range(1, self.args.retry_noisy + 2):
            rec = self.measure(cfg, wl, roles, nginx_log, tag, durations)
            rec["attempt"] = attempt
            if best is None or rec["other_cpu_pct"] < best["other_cpu_pct"]:
                best = rec
            if rec["other_cpu_pct"] <= report.NOISY_PCT or attempt > self.args.retry_noisy:
                break
            log("  %-20s %-9s noisy (other CPU %.0f %%: %s), measuring again"
                % (cfg.name, wl.name, rec["other_cpu_pct"], ", ".join(rec["other_top"][:2])))
        return best

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
        window.start()
        sampler = procfs.MemorySampler(roles, window=window)
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
        rec["switches_per_req"] = {role: c / n if n else None
                                   for role, c in cpu["switches"].items()}
        rec["switches"] = cpu["switches"]
        rec["threads_gone"] = cpu["threads_gone"]
        ours = (sum(cpu["ticks"].values()) + cpu["harness_ticks"]
                + res["wrk_cpu_s"] * procfs.CLK_TCK)
        rec["other_cpu_pct"] = max(0.0, 100.0 * (cpu["machine_busy"] - ours) / cpu["machine_total"])
        rec["machine_busy_pct"] = 100.0 * cpu["machine_busy"] / cpu["machine_total"]
        rec["steal_pct"] = 100.0 * cpu["steal"] / cpu["machine_total"]
        rec["other_top"] = cpu["other_top"]
        rec["mem"] = mem
        return rec
