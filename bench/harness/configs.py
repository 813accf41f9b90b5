"""What the bench runs: server configurations, apps, workloads, and the
correctness check each response must pass before it is measured."""
import http.client
import os
import random
import shutil
import signal

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(BENCH, "apps")
PY = "/usr/bin/python3"  # Debian's: it sees the apt packages (grpc, flask, gunicorn)

# ---------------------------------------------------------------- apps

# app -> language -> file under apps/<lang>/
APP_FILES = {
    "micro": {"python": "micro.py", "perl": "micro.psgi", "ruby": "micro.ru"},
    "page": {"python": "page.py", "perl": "page.psgi", "ruby": "page.ru"},
}


def app_vars(lang, app):
    d = os.path.join(APPS, lang)
    f = APP_FILES[app][lang]
    return {"dir": d, "file": os.path.join(d, f), "name": f, "module": os.path.splitext(f)[0]}


# Bodies the micro apps send (apps/python/micro.py says why they look so).
HELLO = b"Hello, World!"
BIG = b"0123456789abcdef" * 4096
STREAM = b"".join((b"%04d" % i) + b"x" * 1019 + b"\n" for i in range(100))
ECHO_SIZE = 1 << 20
PAGE_TOTAL = "477.75"  # sum of i * 3.25 over items 1..20 not divisible by 3

# ---------------------------------------------------------------- workloads


class Workload:
    """One wrk run: what to request, how hard, and what a right answer is."""

    def __init__(self, name, app, path, conns, threads=2, post=False, server=None,
                 min_body=0, bridge_only=False, what="", short=None):
        self.name, self.app, self.path = name, app, path
        self.short = short or name  # its name in the at-a-glance table
        self.conns, self.threads, self.post = conns, threads, post
        # workloads with the same server share one server start
        self.server = server or app
        self.min_body, self.bridge_only, self.what = min_body, bridge_only, what


WORKLOADS = {w.name: w for w in (
    Workload("hello", "micro", "/hello", 50, min_body=len(HELLO),
             what="13-byte body, wrk -t2 -c50", short="hello, 50 connections"),
    Workload("hello_c1", "micro", "/hello", 1, threads=1, min_body=len(HELLO),
             what="13-byte body, one connection (latency)", short="hello, one connection"),
    Workload("big", "micro", "/big", 50, min_body=len(BIG), what="64 KiB body, -c50",
             short="64 KiB response"),
    Workload("stream", "micro", "/stream", 50, min_body=len(STREAM),
             what="100 chunks of 1 KiB yielded one by one, unbuffered, -c50",
             short="stream, 100 chunks"),
    Workload("echo", "micro", "/echo", 50, post=True, min_body=ECHO_SIZE,
             what="1 MiB POST echoed back, -c50", short="1 MiB POST echo"),
    Workload("page", "page", "/page?user=bench", 50, min_body=4000,
             what="Flask / Dancer2 / Sinatra template page (20 items, layout), -c50",
             short="framework page"),
    Workload("conn1000", "micro", "/hello", 1000, server="conns", min_body=len(HELLO),
             bridge_only=True, what="hello with 1,000 open connections, fresh server"),
)}
ORDER = ["hello", "hello_c1", "big", "stream", "echo", "page", "conn1000"]

# ---------------------------------------------------------------- configurations

# --listen: the default queue of 100 overflows past ~100 concurrent requests
# (nginx answers 502); a deployment raises it, as bridge's Go listener is.
UWSGI = ("uwsgi --master --die-on-term --disable-logging --need-app --chmod-socket=666 "
         "--listen 1024 --processes {workers} --socket {sock} --chdir {dir} ")


class Config:
    """A server behind nginx. kind "bridge" splits its CPU and memory into
    the Go process and its runners; a peer is one "app" tree."""

    def __init__(self, name, lang, kind, loc, cmd, workers=2, stop=signal.SIGTERM,
                 needs=(), workloads=None):
        self.name, self.lang, self.kind, self.loc = name, lang, kind, loc
        self.cmd, self.workers, self.stop = cmd, workers, stop
        self.needs = needs            # executables / files that must exist
        self.workloads = workloads    # None: all that apply

    def argv(self, bridge, sock, app):
        v = app_vars(self.lang, app)
        v.update(bridge=bridge, sock=sock, workers=self.workers)
        return [part.format(**v) for part in self.cmd.split()]

    def with_workers(self, n):
        c = Config(self.name, self.lang, self.kind, self.loc, self.cmd, n, self.stop,
                   self.needs, self.workloads)
        c.name = _renumber(self.name, n)
        return c


def _renumber(name, n):
    # "bridge-py w2" -> "bridge-py w4", "uwsgi-py p2" -> "uwsgi-py p4"
    head, _, last = name.rpartition(" ")
    return "%s %s%d" % (head, last[0], n)


def _bridge(lang, runner, interp, http=False, workloads=None):
    name = {"python": "py", "perl": "psgi", "ruby": "rack"}[lang] + ("-http" if http else "")
    return Config("bridge-%s w2" % name, lang, "bridge", "proxy_keepalive" if http else "uwsgi",
                  "{bridge} serve --runner %s --chdir {dir} --interpreter %s "
                  "--%s unix:{sock} --workers {workers} --log-level warn"
                  % (runner, interp, "http" if http else "uwsgi"), workloads=workloads)


CONFIGS = [
    _bridge("python", "python:{module}:application", PY),
    # the same behind proxy_pass to bridge's HTTP listener, with an upstream
    # keepalive pool: nginx reuses its connections instead of one per request
    _bridge("python", "python:{module}:application", PY, http=True,
            workloads=("hello", "hello_c1", "big", "stream", "page")),
    Config("uwsgi-py p2", "python", "peer", "uwsgi",
           UWSGI + "--plugins python3 --wsgi-file {file}",
           needs=("uwsgi", "/usr/lib/uwsgi/plugins/python3_plugin.so")),
    Config("gunicorn sync w2", "python", "peer", "proxy",
           PY + " /usr/bin/gunicorn --log-level warning --chdir {dir} -k sync -w {workers} "
           "-b unix:{sock} {module}:application",
           stop=signal.SIGINT, needs=("/usr/bin/gunicorn",)),
    _bridge("perl", "perl:{name}", "/usr/bin/perl"),
    Config("uwsgi-psgi p2", "perl", "peer", "uwsgi", UWSGI + "--plugins psgi --psgi {file}",
           needs=("uwsgi", "/usr/lib/uwsgi/plugins/psgi_plugin.so")),
    Config("starman w2", "perl", "peer", "proxy",
           "starman --workers {workers} -E deployment --listen {sock} {file}",
           needs=("starman",)),
    _bridge("ruby", "ruby:{name}", "/usr/bin/ruby"),
    # uWSGI's rack plugin runs a full GC after every request unless told
    # otherwise; every 100 requests is what a tuned deployment would use.
    Config("uwsgi-rack p2 gc100", "ruby", "peer", "uwsgi",
           UWSGI + "--plugins rack_ruby31 --rack {file} --rb-gc-freq 100",
           needs=("uwsgi", "/usr/lib/uwsgi/plugins/rack_ruby31_plugin.so")),
    Config("puma w2t4", "ruby", "peer", "proxy",
           "puma -q -e production -w {workers} -t 4:4 -b unix://{sock} {file}",
           needs=("puma",)),
]

# nginx's uwsgi_modifier1 for each language, as a uWSGI deployment sets it.
MODIFIER1 = {"python": 0, "perl": 5, "ruby": 7}

# Debian packages behind each need, for the "missing" message.
PACKAGES = {
    "nginx": "nginx", "wrk": "wrk", "uwsgi": "uwsgi",
    "/usr/lib/uwsgi/plugins/python3_plugin.so": "uwsgi-plugin-python3",
    "/usr/lib/uwsgi/plugins/psgi_plugin.so": "uwsgi-plugin-psgi",
    "/usr/lib/uwsgi/plugins/rack_ruby31_plugin.so": "uwsgi-plugin-rack-ruby3.1",
    "/usr/bin/gunicorn": "gunicorn", "starman": "starman", "puma": "puma",
}

# What the page app of each language needs, checked by loading it.
PAGE_PROBES = {
    "python": ([PY, "-c", "import flask"], "python3-flask"),
    "perl": (["/usr/bin/perl", "-MDancer2", "-MTemplate", "-e1"], "libdancer2-perl libtemplate-perl"),
    "ruby": (["/usr/bin/ruby", "-e", "require 'sinatra/base'"], "ruby-sinatra"),
}


def missing(need):
    """True when an executable or file named by a Config's needs is absent."""
    if need.startswith("/"):
        return not os.path.exists(need)
    return shutil.which(need) is None


# ---------------------------------------------------------------- checks


def http_request(port, method, path, body=None, timeout=10.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def check(port, wl):
    """Raise with a clear message unless the workload's response is right."""
    if wl.post:
        block = random.randbytes(4096)
        payload = block * (ECHO_SIZE // 4096)
        status, headers, body = http_request(port, "POST", wl.path, payload)
        ok, want = body == payload, "the 1 MiB body back"
    else:
        status, headers, body = http_request(port, "GET", wl.path)
        if wl.path == "/hello":
            ok, want = body == HELLO, repr(HELLO)
        elif wl.path == "/big":
            ok, want = body == BIG, "64 KiB of 0123456789abcdef"
        elif wl.path == "/stream":
            ok, want = body == STREAM, "100 numbered 1 KiB chunks"
        else:
            text = body.decode("utf-8", "replace")
            ok = (headers.get("content-type", "").startswith("text/html")
                  and text.count('class="item"') == 20 and "Item 20 &amp; co" in text
                  and "Hello, bench" in text and PAGE_TOTAL in text
                  and text.rstrip().endswith("</html>"))
            want = "the catalogue page (20 escaped items, total %s)" % PAGE_TOTAL
    if status != 200 or not ok:
        raise RuntimeError("wrong response to %s %s: status %d, %d bytes (%r...), want %s"
                           % ("POST" if wl.post else "GET", wl.path, status, len(body),
                              body[:80], want))
