"""The runner transport table: bench/slotload (a Go client that starts one
runner as `bridge serve` does and keeps K Slot streams busy with the hello
request) for each language at 1 and 8 slots, without nginx or bridge's
fronts in the way. What it measures is the Slot wire itself: gRPC over
HTTP/2 on a unix socket, and the runner's side of it."""
import json
import os
import re
import subprocess

from . import configs as C

# (label, --runner, language, extra environment): python once per server
# of the shim (python/README.md, BRIDGE_PY_SERVER); ruby has one transport
# (ruby-grpc's server was removed: it won no case, ruby/README.md). The
# "runner says" column (Describe's server field) tells which ran.
RUNNERS = [
    ("python native", "python:micro:application", "python", {"BRIDGE_PY_SERVER": "native"}),
    ("perl", "perl:micro.psgi", "perl", {}),
    ("ruby native", "ruby:micro.ru", "ruby", {}),
]
SLOTS = [1, 8]
INTERP = {"python": C.PY, "perl": "/usr/bin/perl", "ruby": "/usr/bin/ruby"}

# issue targets: Python µs/req and switches/req by slots; Ruby within 1.5x
# of the best Python at the same slots
PY_TARGET = {1: (60.0, 1.2), 8: (30.0, 0.15)}
RUBY_FACTOR = 1.5


def plan(only=None):
    return [(label, spec, lang, env, k) for label, spec, lang, env in RUNNERS for k in SLOTS
            if not only or re.search(only, label)]


def run_one(slotload, label, spec, lang, env, slots, seconds, warmup, out, args):
    argv = [slotload, "--runner", spec, "--chdir", C.app_vars(lang, "micro")["dir"],
            "--interpreter", INTERP[lang], "--slots", str(slots), "--threads", "1",
            "--duration", "%ds" % seconds, "--warmup", "%ds" % warmup, "--json"]
    from .measure import wait_quiet  # measure imports report, which imports us
    busy, waited = wait_quiet(args.quiet_pct, args.quiet_wait)
    logp = os.path.join(out, "logs", "transport_%s_s%d.log" % (label.replace(" ", "_"), slots))
    with open(logp, "wb") as lf:
        p = subprocess.run(argv, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                           stderr=lf, timeout=seconds + warmup + 120)
    rec = {"type": "transport", "suite": "transport", "label": label, "lang": lang,
           "slots": slots, "argv": " ".join(argv), "env": env, "pre_busy_pct": busy,
           "quiet_wait_s": waited}
    try:
        rec.update(json.loads(p.stdout.decode().strip().splitlines()[-1]))
        rec["ok"] = p.returncode == 0
        if not rec["ok"]:
            rec["error"] = "slotload exit %d: %s" % (p.returncode, rec.get("first_error"))
    except (ValueError, IndexError):
        rec.update(ok=False, error="slotload exit %d: %s" % (
            p.returncode, open(logp, errors="replace").read()[-400:]))
    return rec


def progress_line(r):
    if not r.get("ok"):
        return "  transport %-12s slots %d FAILED: %s" % (r["label"], r["slots"], r.get("error"))
    return ("  transport %-12s slots %d %8.0f req/s  runner %6.1f µs/req %5.2f sw/req (%d threads)"
            "  client %6.1f µs/req %5.2f sw/req  other %.1f%%" % (
                r["label"], r["slots"], r["rps"], r["runner_cpu_us_per_req"],
                r["runner_switches_per_req"], r["runner_threads"], r["client_cpu_us_per_req"],
                r["client_switches_per_req"], r.get("other_cpu_pct", 0)))


def _target(r, by):
    if r["lang"] == "python":
        us, sw = PY_TARGET.get(r["slots"], (None, None))
        if us is None:
            return ""
        met = r["runner_cpu_us_per_req"] <= us and r["runner_switches_per_req"] <= sw
        return "%s (≤ %.0f µs, ≤ %.2f sw)" % ("met" if met else "**missed**", us, sw)
    if r["lang"] == "ruby":
        pys = [p for (label, k), p in by.items() if k == r["slots"] and p["lang"] == "python"
               and p.get("ok") and p["runner_cpu_us_per_req"]]
        if not pys:
            return ""
        py = min(pys, key=lambda p: p["runner_cpu_us_per_req"])
        f = r["runner_cpu_us_per_req"] / py["runner_cpu_us_per_req"]
        return "%.2f× %s: %s (≤ %.1f×)" % (f, py["label"], "met" if f <= RUBY_FACTOR
                                           else "**missed**", RUBY_FACTOR)
    return ""


def table(records):
    recs = [r for r in records if r.get("type") == "transport"]
    if not recs:
        return ""
    by = {(r["label"], r["slots"]): r for r in recs}
    head = ["runner", "runner says", "slots", "req/s", "mean µs", "runner CPU µs/req", "runner switches/req",
            "runner threads", "client CPU µs/req", "client switches/req", "other CPU %", "target"]
    rows = []
    for r in recs:
        if not r.get("ok"):
            rows.append([r["label"], "", r["slots"], "FAILED"] + [""] * (len(head) - 4))
            continue
        gone = r.get("runner_threads_gone") or 0
        rows.append([r["label"], r.get("server", ""), r["slots"], "%.0f" % r["rps"], "%.0f" % r["mean_latency_us"],
                     "%.1f" % r["runner_cpu_us_per_req"], "%.2f" % r["runner_switches_per_req"],
                     str(r["runner_threads"]) + (" (%d exited)" % gone if gone else ""),
                     "%.1f" % r["client_cpu_us_per_req"], "%.2f" % r["client_switches_per_req"],
                     "%.1f" % r.get("other_cpu_pct", 0), _target(r, by)])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
