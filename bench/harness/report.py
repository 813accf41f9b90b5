"""Markdown tables from a bench run's records (results.jsonl + meta.json)."""
import os

from . import configs as C
from . import sysinfo
from . import transport

LANG_ORDER = ["python", "perl", "ruby"]
CONFIG_ORDER = {c.name: i for i, c in enumerate(C.CONFIGS)}
TARGET_IDLE_MIB, TARGET_1K_MIB = 30, 80
NOISY_PCT = 10.0  # "other CPU %" above which a measurement is marked noisy


def _num(x, nd=0):
    return "–" if x is None else ("%%.%df" % nd) % x


def _blank(x, nd=2):
    """A number, or nothing: a run recorded before the field existed."""
    return "" if x is None else ("%%.%df" % nd) % x


def _mib(kib):
    return None if kib is None else kib / 1024


def _mem(rec, role, key="rss"):
    m = rec.get("mem", {}).get(role)
    return None if m is None else _mib(m[key])


def _app_role(rec):
    return "runners" if rec["kind"] == "bridge" else "app"


def _cpu(rec, role):
    return rec.get("cpu_us_per_req", {}).get(role)


def _sw(rec, role):
    """Context switches per request of a role; None for runs recorded before
    the bench counted them."""
    return (rec.get("switches_per_req") or {}).get(role)


def _sw_server(rec):
    """Switches per request of the server: Go + runners, or the peer's tree."""
    if rec["kind"] != "bridge":
        return _sw(rec, "app")
    go, run = _sw(rec, "go"), _sw(rec, "runners")
    return None if go is None or run is None else go + run


def progress_line(rec):
    app = _app_role(rec)
    return ("  %-20s %-9s %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  err %d  "
            "CPU µs/req nginx %s go %s app %s  sw/req nginx %s go %s app %s  "
            "RSS MiB go %s app %s  other %.1f%%" % (
                rec["config"], rec["workload"], rec["rps"], rec["lat_p50_us"] / 1000,
                rec["lat_p99_us"] / 1000, rec["errors"], _num(_cpu(rec, "nginx")),
                _num(_cpu(rec, "go")), _num(_cpu(rec, app)), _num(_sw(rec, "nginx"), 2),
                _num(_sw(rec, "go"), 2), _num(_sw(rec, app), 2), _num(_mem(rec, "go"), 1),
                _num(_mem(rec, app), 1), rec["other_cpu_pct"]))


def _sort_key(rec):
    wl = rec.get("workload", "")
    return (LANG_ORDER.index(rec["lang"]) if rec["lang"] in LANG_ORDER else 9,
            C.ORDER.index(wl) if wl in C.ORDER else 99,
            CONFIG_ORDER.get(rec["config"], 99), rec.get("workers", 0))


def _table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _errors(rec):
    s = str(rec["errors"])
    if rec.get("nginx_error_lines"):
        s += " (nginx log: %d)" % rec["nginx_error_lines"]
    return s


def main_table(recs):
    head = ["config", "workload", "req/s", "p50 ms", "p99 ms", "errors",
            "CPU µs/req nginx", "CPU µs/req Go", "CPU µs/req app",
            "switches/req nginx", "switches/req Go", "switches/req app",
            "switches/req server (Go+app)", "RSS MiB Go",
            "RSS MiB app (procs)", "PSS MiB Go", "PSS MiB app", "other CPU %"]
    rows = []
    for r in sorted(recs, key=_sort_key):
        if not r.get("ok"):
            rows.append([r["config"], r["workload"], "FAILED"] + [""] * (len(head) - 3))
            continue
        app = _app_role(r)
        procs = r.get("mem", {}).get(app, {}).get("procs", 0)
        rows.append([r["config"], r["workload"], _num(r["rps"]), _num(r["lat_p50_us"] / 1000, 2),
                     _num(r["lat_p99_us"] / 1000, 2), _errors(r),
                     _num(_cpu(r, "nginx")), _num(_cpu(r, "go")), _num(_cpu(r, app)),
                     _blank(_sw(r, "nginx")), (_blank(_sw(r, "go")) if r["kind"] == "bridge" else "–"), _blank(_sw(r, app)),
                     _blank(_sw_server(r)), _num(_mem(r, "go"), 1), "%s (%d)" % (_num(_mem(r, app), 1), procs),
                     _num(_mem(r, "go", "pss"), 1), _num(_mem(r, app, "pss"), 1),
                     _num(r["other_cpu_pct"], 1)])
    return _table(head, rows)


def summary_tables(recs):
    """Per language: req/s of every config by workload, the one-connection
    p50, and bridge ÷ each peer (the ratios issue 7's targets are set in)."""
    ok = {(r["config"], r["workload"]): r for r in recs if r.get("ok")}
    out = []
    for lang in LANG_ORDER:
        names = sorted({r["config"] for r in recs if r["lang"] == lang}, key=CONFIG_ORDER.get)
        bridges = [n for n in names if n.startswith("bridge")]
        peers = [n for n in names if not n.startswith("bridge")]
        if not names:
            continue
        pairs = [(b, p) for b in bridges for p in peers]
        head = ["workload"] + names + ["%s ÷ %s" % (b.split()[0], p) for b, p in pairs]
        rows = []
        for w in C.ORDER:
            if w == "conn1000" or not any((n, w) in ok for n in names):
                continue
            rows.append(_summary_row(w + " req/s", w, "rps", names, pairs, ok, "%.0f"))
            if w == "hello_c1":
                rows.append(_summary_row("hello_c1 p50 ms", w, "lat_p50_us", names, pairs, ok,
                                         "%.2f", scale=1e-3))
        out.append("%s:\n\n%s" % (lang.capitalize(), _table(head, rows)))
    return "\n\n".join(out)


def glance_table(recs):
    """Every config's req/s (and one-connection p50) by workload, in one
    table: the one the top-level README shows."""
    ok = {(r["config"], r["workload"]): r for r in recs if r.get("ok")}
    names = sorted({r["config"] for r in recs}, key=lambda n: CONFIG_ORDER.get(n, 99))
    rows = []
    for w in C.ORDER:
        if w == "conn1000" or not any((n, w) in ok for n in names):
            continue
        rows.append([C.WORKLOADS[w].short + " req/s"]
                    + [_num(ok[(n, w)]["rps"]) + _noisy(ok[(n, w)]) if (n, w) in ok else "–"
                       for n in names])
        if w == "hello_c1":
            rows.append(["one connection, p50 ms"]
                        + [_num(ok[(n, w)]["lat_p50_us"] / 1000, 2) + _noisy(ok[(n, w)])
                           if (n, w) in ok else "–" for n in names])
    return _table(["workload"] + names, rows)


def _noisy(rec):
    """"~" when the rest of the machine used more than NOISY_PCT meanwhile."""
    return "~" if rec.get("other_cpu_pct", 0) > NOISY_PCT else ""


def _summary_row(label, w, key, names, pairs, ok, fmt, scale=1.0):
    row = [label]
    for n in names:
        r = ok.get((n, w))
        row.append(fmt % (r[key] * scale) + _noisy(r) if r else "–")
    for b, p in pairs:
        rb, rp = ok.get((b, w)), ok.get((p, w))
        row.append("%.2f×" % (rb[key] / rp[key]) + (_noisy(rb) or _noisy(rp))
                   if rb and rp and rp[key] else "–")
    return row


def idle_table(idles):
    head = ["config", "app", "ready after s", "RSS MiB Go", "PSS MiB Go", "RSS MiB app (procs)",
            "PSS MiB app", "RSS MiB nginx", "PSS MiB nginx"]
    rows = []
    for r in sorted(idles, key=lambda r: (_sort_key(r), r["app"])):
        app = _app_role(r)
        procs = r.get("mem", {}).get(app, {}).get("procs", 0)
        rows.append([r["config"], r["app"], _num(r.get("ready_s"), 1), _num(_mem(r, "go"), 1),
                     _num(_mem(r, "go", "pss"), 1), "%s (%d)" % (_num(_mem(r, app), 1), procs),
                     _num(_mem(r, app, "pss"), 1), _num(_mem(r, "nginx"), 1),
                     _num(_mem(r, "nginx", "pss"), 1)])
    return _table(head, rows)


def conns_table(recs, idles):
    idle = {r["config"]: r for r in idles if r.get("server") == "conns"}
    head = ["config", "Go RSS MiB idle", "Go RSS MiB at 1,000 conns", "Go PSS MiB at 1,000 conns",
            "req/s", "p50 ms", "p99 ms", "errors",
            "target (idle ≤ %d, 1k ≤ %d MiB, no errors)" % (TARGET_IDLE_MIB, TARGET_1K_MIB)]
    rows = []
    for r in sorted(recs, key=_sort_key):
        if r.get("workload") != "conn1000":
            continue
        if not r.get("ok"):
            rows.append([r["config"]] + ["FAILED"] + [""] * (len(head) - 2))
            continue
        i = idle.get(r["config"])
        rss_idle = _mem(i, "go") if i else None
        rss_1k = _mem(r, "go")
        met = ((rss_idle is not None and rss_idle <= TARGET_IDLE_MIB)
               and rss_1k <= TARGET_1K_MIB and r["errors"] == 0 and not r.get("nginx_error_lines"))
        rows.append([r["config"], _num(rss_idle, 1), _num(rss_1k, 1), _num(_mem(r, "go", "pss"), 1),
                     _num(r["rps"]), _num(r["lat_p50_us"] / 1000, 2),
                     _num(r["lat_p99_us"] / 1000, 2), _errors(r), "met" if met else "**missed**"])
    return _table(head, rows) if rows else ""


def scaling_tables(recs):
    recs = [r for r in recs if r["suite"] == "scaling"]
    if not recs:
        return ""
    conns = sorted({r["conns"] for r in recs if r.get("ok")} or {0})
    configs = []
    base = {c.name.rsplit(" ", 1)[0]: i for i, c in enumerate(C.CONFIGS)}
    for r in sorted(recs, key=lambda r: (base.get(r["config"].rsplit(" ", 1)[0], 99), r["workers"])):
        if r["config"] not in configs:
            configs.append(r["config"])
    by = {(r["config"], r.get("conns")): r for r in recs}
    out = []
    for title, cell in (("req/s", lambda r: _num(r["rps"])),
                        ("p99 ms", lambda r: _num(r["lat_p99_us"] / 1000, 1))):
        rows = []
        for c in configs:
            row = [c]
            for n in conns:
                r = by.get((c, n))
                if r is None:
                    row.append("–")
                elif not r.get("ok"):
                    row.append("FAILED")
                else:
                    row.append(cell(r) + ("*" if r["errors"] else "")
                               + ("~" if r["other_cpu_pct"] > NOISY_PCT else ""))
            rows.append(row)
        out.append("%s:\n\n%s" % (title, _table(["config"] + ["c=%d" % n for n in conns], rows)))
    return "\n\n".join(out)


def render(meta, records):
    measures = [r for r in records if r["type"] == "measure"]
    matrix = [r for r in measures if r["suite"] == "matrix"]
    idles = [r for r in records if r["type"] == "idle" and r["suite"] == "matrix"]
    machine, soft = sysinfo.describe(meta)
    wall = meta.get("wall_s")
    lines = [
        "# Benchmark results",
        "",
        "%s run (`bench/bench.py%s`), started %s UTC, %s." % (
            meta["suite"], "".join(" " + a for a in meta.get("argv", [])),
            meta["started"][:16].replace("T", " "),
            "%.1f min" % (wall / 60) if wall else "unfinished"),
        "",
        "- Machine: %s." % machine,
        "- Software: %s." % soft,
        "",
    ]
    bins = meta.get("binaries") or {}
    if bins:
        lines[-1:-1] = ["- Binaries measured (copied at the start of the run, so a rebuild "
                        "meanwhile changes nothing): " + "; ".join(
                            "%s built %s UTC, sha256 %s…" % (os.path.basename(b["path"]),
                                                            b["mtime"][:19].replace("T", " "),
                                                            b["sha256"][:12])
                            for b in bins.values()) + "."]
    if matrix or any(r["suite"] == "scaling" for r in measures):
        lines[-1:-1] = [
            "- Method: one configuration at a time, each behind its own nginx (same config: "
            "client keep-alive, `uwsgi_pass` for bridge and uWSGI, `proxy_pass` for Gunicorn, "
            "Starman and Puma, app on a unix socket; bridge-py-http: `proxy_pass` to bridge's "
            "`--http` listener over HTTP/1.1 with `keepalive 32` upstream connections); each response checked before it is "
            "measured; wrk %d s after %d s warm-up. CPU µs per request: utime+stime from "
            "/proc over the measured window, for nginx's processes, bridge's Go process "
            "(\"Go\"), and the app's processes (bridge's runners, or the peer's master and "
            "workers). Switches per request: voluntary + nonvoluntary context switches of "
            "every thread of the role's processes (/proc/PID/task/TID/status) over the same "
            "window; \"server\" is Go + runners for bridge, the whole tree for a peer; "
            "a thread that exits during the window counts up to its last 0.25 s sample "
            "(Starman replaces a worker every 1,000 requests). "
            "RSS/PSS: the largest sum over the role's processes, sampled every "
            "0.25 s during the window. \"other CPU\" is what the rest of the machine used "
            "meanwhile: above %.0f %% the row is noisy."
            % (meta["duration_s"], meta["warmup_s"], NOISY_PCT),
            "- Workloads: " + "; ".join("`%s` %s" % (w, C.WORKLOADS[w].what) for w in C.ORDER) + ".",
        ]
    if matrix:
        lines += ["## At a glance", "",
                  "req/s (and the one-connection p50); ~ marks a number measured while "
                  "the rest of the machine used more than %.0f %% of the CPUs." % NOISY_PCT,
                  "", glance_table(matrix), ""]
        summary = summary_tables(matrix)
        if summary:
            lines += ["## Summary: bridge and its peers, same run", "",
                      "bridge ÷ peer: for req/s above 1 means bridge is faster; for p50 "
                      "below 1 means bridge answers sooner. ~: noisy, as above.", "",
                      summary, ""]
        lines += ["## Throughput, latency, CPU and memory", "", main_table(matrix), ""]
        conns = conns_table(matrix, [r for r in records if r["type"] == "idle"])
        if conns:
            lines += ["## 1,000 concurrent connections", "",
                      "`conn1000`: a freshly started bridge, idle memory sampled %s s after "
                      "it answered, then wrk -t2 -c1000 through nginx." % meta.get("settle_s", 1),
                      "", conns, ""]
        if idles:
            lines += ["## Memory at idle", "",
                      "Sampled %s s after each server answered its first request."
                      % meta.get("settle_s", 1), "",
                      idle_table([r for r in idles if r.get("server") != "conns"]), ""]
    scaling = scaling_tables(measures)
    if scaling:
        lines += ["## Scaling: hello by workers and concurrency", "",
                  "wrk -c N (-t2, -t1 for c=1) for %s s after 1 s warm-up, against one "
                  "server per worker count; * marks a run with errors, ~ one during which the rest "
                  "of the machine used more than %.0f %% of the CPUs."
                  % (meta.get("scaling_duration_s", "?"), NOISY_PCT), "", scaling, ""]
    ttable = transport.table(records)
    if ttable:
        lines += ["## Runner transport: Slot streams without nginx", "",
                  "`bench/slotload`: one runner started as `bridge serve` starts it (1 app "
                  "thread), K Slot streams each sending the hello request (one frame, head and "
                  "end) and reading its response, as fast as they can, 1 s warm-up then the "
                  "measured window. Runner CPU µs and context switches per request: every "
                  "thread of the runner's process tree, from /proc (threads that exit meanwhile "
                  "are not counted); client: the Go load client's own getrusage. Targets: "
                  "Python ≤ 60 µs and ≤ 1.2 switches per request at one slot, ≤ 30 µs and "
                  "≤ 0.15 at eight; Ruby within 1.5× of the best Python at the same slots. The shims are the ones "
                  "built into slotload (go build embeds them, as in bin/bridge).", "", ttable, ""]
    failed = [r for r in measures if not r.get("ok")]
    failed += [dict(r, config=r["label"], workload="slots=%d" % r["slots"])
               for r in records if r.get("type") == "transport" and not r.get("ok")]
    if failed:
        lines += ["## Failures", ""]
        lines += ["- %s %s (%s): %s" % (r["config"], r.get("workload"), r["suite"], r["error"])
                  for r in failed]
        lines.append("")
    return "\n".join(lines)
