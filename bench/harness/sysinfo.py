"""The machine and the versions of everything a bench run measured."""
import os
import platform
import re
import subprocess

# Debian packages whose versions a results table names.
PACKAGES = ["nginx", "wrk", "uwsgi-core", "uwsgi-plugin-python3", "uwsgi-plugin-psgi",
            "uwsgi-plugin-rack-ruby3.1", "gunicorn", "starman", "puma",
            "python3-flask", "libdancer2-perl", "ruby-sinatra", "ruby-rack",
            "python3-grpcio", "ruby-grpc", "libprotocol-http2-perl", "libplack-perl"]


def _out(argv, cwd=None):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=cwd, timeout=20)
        return p.stdout.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    info = {"kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            info["os"] = m.group(1) if m else "?"
    except OSError:
        info["os"] = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
        m = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
        info["cpu"] = m.group(1).strip() if m else platform.machine()
        info["vm"] = bool(re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.M))
    except OSError:
        info["cpu"], info["vm"] = platform.machine(), None
    try:
        with open("/proc/meminfo") as f:
            kib = int(re.search(r"^MemTotal:\s*(\d+)", f.read(), re.M).group(1))
        info["mem_gib"] = round(kib / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    return info


def versions(root):
    v = {}
    out = _out(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"] + PACKAGES)
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1]:
            v[parts[0]] = parts[1]
    v["python"] = _out(["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"])
    v["perl"] = _out(["/usr/bin/perl", "-e", 'printf "%vd", $^V'])
    v["ruby"] = _out(["/usr/bin/ruby", "-e", "print RUBY_VERSION"])
    go = os.environ.get("GO") or "/usr/local/go/bin/go"
    v["go"] = _out([go, "env", "GOVERSION"]) if os.path.exists(go) else ""
    v["bridge"] = _out(["git", "describe", "--always", "--dirty", "--exclude", "*"], cwd=root)
    v["bridge_date"] = _out(["git", "log", "-1", "--format=%cI"], cwd=root)
    return v


def describe(meta):
    """One Markdown paragraph: date, machine, versions."""
    m, v = meta["machine"], meta["versions"]

    def pkg(name):
        ver = v.get(name, "")
        # "2.0.21-5.1" -> "2.0.21"; "debian/4.1.0-3+b2" style kept short
        return re.sub(r"^\d+:", "", ver).split("-")[0].split("+")[0] or "?"

    machine = "%s, Linux %s, %d × %s%s, %s GiB RAM" % (
        m.get("os", "?"), m.get("kernel", "?"), m.get("cpus", 0), m.get("cpu", "?"),
        " (VM)" if m.get("vm") else "", m.get("mem_gib", "?"))
    soft = ("bridge %s (%s, %s); nginx %s; uWSGI %s; Gunicorn %s; Starman %s; Puma %s; "
            "Python %s (grpcio %s, Flask %s); Perl %s (Dancer2 %s, Protocol::HTTP2 %s); "
            "Ruby %s (grpc %s, Rack %s, Sinatra %s); wrk %s" % (
                v.get("bridge", "?"), (v.get("bridge_date") or "?")[:10], v.get("go", "?"),
                pkg("nginx"), pkg("uwsgi-core"), pkg("gunicorn"), pkg("starman"), pkg("puma"),
                v.get("python", "?"), pkg("python3-grpcio"), pkg("python3-flask"),
                v.get("perl", "?"), pkg("libdancer2-perl"), pkg("libprotocol-http2-perl"),
                v.get("ruby", "?"), pkg("ruby-grpc"), pkg("ruby-rack"), pkg("ruby-sinatra"),
                pkg("wrk")))
    return machine, soft
