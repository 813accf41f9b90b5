"""Processes the bench starts, and what /proc says about them.

CPU time comes from /proc/PID/stat (utime+stime: every thread of the
process, in clock ticks); memory from /proc/PID/statm (RSS) and
/proc/PID/smaps_rollup (PSS). A "role" is a set of processes whose numbers
are summed: nginx's tree, bridge's own Go process, bridge's runners (the rest
of its tree), or a peer's whole tree.

Context switches come from /proc/PID/task/TID/status (voluntary_ctxt_switches
+ nonvoluntary_ctxt_switches of every thread; /proc/PID/status alone is the
main thread). A thread or process that exits between the two samples of a
window takes its switches with it: they are not counted.
"""
import os
import signal
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    return s[s.rfind(")") + 2:].split()


def snapshot():
    """{pid: (ppid, cpu_ticks, starttime, state)} for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f:
            # f[0] is field 3 (state); ppid 4, utime 14, stime 15, starttime 22
            out[int(name)] = (int(f[1]), int(f[11]) + int(f[12]), int(f[19]), f[0])
    return out


def reaped_ticks(pid):
    """cutime+cstime: CPU of children `pid` has waited for (a worker a server
    replaced during the window). Counted only for the roots we started."""
    f = _stat_fields(pid)
    return int(f[13]) + int(f[14]) if f else 0


def descendants(root, snap):
    """root and everything below it, from one snapshot."""
    kids = {}
    for pid, (ppid, _, _, _) in snap.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in snap:
            out.append(p)
            todo.extend(kids.get(p, ()))
    return out


def switches(pid):
    """{tid: voluntary + nonvoluntary context switches} for pid's live
    threads; None once the process is gone."""
    out = {}
    try:
        listed = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in listed:
        try:
            n = 0
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[1])
            out[tid] = n
        except (OSError, ValueError):
            continue  # the thread exited meanwhile
    return out or None


def switches_of(pids, snap):
    """{pid: (starttime, {tid: switches})} for the pids still there."""
    out = {}
    for p in pids:
        n = switches(p)
        if n is not None and p in snap:
            out[p] = (snap[p][2], n)
    return out


def memory_kib(pid):
    """(rss, pss) in KiB; (0, 0) once the process is gone."""
    try:
        with open("/proc/%d/statm" % pid) as f:
            rss = int(f.read().split()[1]) * PAGE_KIB
        pss = 0
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        return rss, pss
    except (OSError, IndexError, ValueError):
        return 0, 0


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def machine_ticks():
    """(busy, steal, total) ticks over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, steal, sum(v)


class Roles:
    """Maps role names to the processes in them, resolved against a snapshot.

    spec: {role: (root_pid, how)} with how = "tree" (root and descendants),
    "self" (the root only) or "below" (descendants, not the root).
    """

    def __init__(self, spec):
        self.spec = spec

    def pids(self, snap):
        out = {}
        for role, (root, how) in self.spec.items():
            tree = descendants(root, snap)
            if how == "self":
                tree = [root] if root in snap else []
            elif how == "below":
                tree = [p for p in tree if p != root]
            out[role] = tree
        return out

    def reaped(self):
        """Reaped-children ticks, by role: a root's waited-for children belong
        to "tree" and "below" roles, never to a "self" role."""
        out = {}
        for role, (root, how) in self.spec.items():
            if how != "self":
                out[role] = out.get(role, 0) + reaped_ticks(root)
        return out


class CpuWindow:
    """CPU ticks per role between start() and stop(), counting processes that
    existed at either end (matched by start time, so a reused pid is not
    mistaken for the old process)."""

    def __init__(self, roles):
        self.roles = roles
        self.lock = threading.Lock()  # observe() runs in the memory sampler's thread

    def start(self):
        self.snap0 = snapshot()
        self.pids0 = self.roles.pids(self.snap0)
        self.sw0 = switches_of(set().union(*self.pids0.values()), self.snap0)
        # (pid, starttime) -> {tid: switches} as last seen, and the roles each
        # process was seen in; observe() updates them during the window
        self.sw_last = {(p, v[0]): dict(v[1]) for p, v in self.sw0.items()}
        self.sw_roles = {}
        self._note_roles(self.pids0, self.snap0)
        self.reaped0 = self.roles.reaped()
        self.machine0 = machine_ticks()
        self.self0 = os.times()

    def _note_roles(self, pids, snap):
        for role, ps in pids.items():
            for p in ps:
                if p in snap:
                    self.sw_roles.setdefault((p, snap[p][2]), set()).add(role)

    def _merge(self, sw):
        for p, (start, tids) in sw.items():
            self.sw_last.setdefault((p, start), {}).update(tids)

    def observe(self, snap):
        """Read the switches of the roles' processes now (the memory sampler
        calls this every 0.25 s), so processes and threads that end before
        the window does are counted up to here."""
        pids = self.roles.pids(snap)
        sw = switches_of(set().union(*pids.values()), snap)
        with self.lock:
            self._note_roles(pids, snap)
            self._merge(sw)

    def stop(self):
        snap1 = snapshot()
        pids1 = self.roles.pids(snap1)
        sw1 = switches_of(set().union(*pids1.values()), snap1)
        with self.lock:
            self._note_roles(pids1, snap1)
            self._merge(sw1)
            sw_last = {k: dict(v) for k, v in self.sw_last.items()}
            sw_roles = {k: set(v) for k, v in self.sw_roles.items()}
        reaped1 = self.roles.reaped()
        machine1 = machine_ticks()
        self1 = os.times()
        ticks, sw, lost = {}, {}, {}
        for role, (root, how) in self.roles.spec.items():
            total = 0
            for pid in set(self.pids0.get(role, ())) | set(pids1.get(role, ())):
                a, b = self.snap0.get(pid), snap1.get(pid)
                if a and b and a[2] == b[2]:
                    total += b[1] - a[1]
                elif b and (not a or a[2] != b[2]):
                    total += b[1]  # started during the window
                elif a and a[0] == root and how != "self":
                    # gone: the root reaped it, so its whole life is in the
                    # root's reaped ticks below; take off what it had used
                    # before the window (a worker a server recycled)
                    total -= a[1]
            total += reaped1.get(role, 0) - self.reaped0.get(role, 0)
            ticks[role] = max(0, total)
            # switches, thread by thread, from the start of the window to the
            # last time the thread was seen (at the end, or at one of the
            # observe() samples every 0.25 s): a worker a server replaced
            # mid-window counts up to its last sample; what a thread did
            # after it (and a thread that lived between two samples) is lost.
            # threads_gone: threads last seen before the end.
            n = gone = 0
            end = {(p, v[0]) for p, v in sw1.items()}
            for key, last in sw_last.items():
                if role not in sw_roles.get(key, ()):
                    continue
                first = self.sw0.get(key[0])
                first = first[1] if first and first[0] == key[1] else {}
                n += sum(c - first.get(t, 0) for t, c in last.items())
                at_end = sw1[key[0]][1] if key in end else {}
                gone += len(last.keys() - at_end.keys())
            sw[role] = n
            lost[role] = gone
        busy = machine1[0] - self.machine0[0]
        steal = machine1[1] - self.machine0[1]
        total = machine1[2] - self.machine0[2] or 1
        harness = ((self1.user - self.self0.user) + (self1.system - self.self0.system)) * CLK_TCK
        # the busiest processes outside the roles: who else used the machine
        ours = set().union(*self.pids0.values(), *pids1.values(), {os.getpid()})
        others = []
        for pid, b in snap1.items():
            if pid in ours:
                continue
            a = self.snap0.get(pid)
            d = b[1] - a[1] if a and a[2] == b[2] else b[1] if not a else 0
            if d > 0:
                others.append((d, pid))
        others.sort(reverse=True)
        top = ["%s[%d] %.2fs" % (_comm(p), p, d / CLK_TCK) for d, p in others[:4]]
        return {"other_top": top, "ticks": ticks, "switches": sw,
                "threads_gone": lost, "machine_busy": busy, "machine_total": total,
                "steal": steal, "harness_ticks": harness}


class MemorySampler(threading.Thread):
    """Samples RSS and PSS of every role's processes every `interval` s and
    keeps the maxima: of each role's sum, and of each single process."""

    def __init__(self, roles, interval=0.25, window=None):
        super().__init__(daemon=True)
        self.roles, self.interval = roles, interval
        self.window = window  # a started CpuWindow to observe() at each sample
        self.done = threading.Event()
        self.role_max = {}   # role -> {"rss": KiB, "pss": KiB, "procs": n}
        self.proc_max = {}   # role -> {"rss": KiB, "pss": KiB} largest single process
        self.samples = 0

    def sample(self):
        snap = snapshot()
        if self.window is not None:
            self.window.observe(snap)
        for role, pids in self.roles.pids(snap).items():
            rss = pss = 0
            one = self.proc_max.setdefault(role, {"rss": 0, "pss": 0})
            for p in pids:
                r, s = memory_kib(p)
                rss += r
                pss += s
                one["rss"] = max(one["rss"], r)
                one["pss"] = max(one["pss"], s)
            m = self.role_max.setdefault(role, {"rss": 0, "pss": 0, "procs": 0})
            m["rss"] = max(m["rss"], rss)
            m["pss"] = max(m["pss"], pss)
            m["procs"] = max(m["procs"], len(pids))
        self.samples += 1

    def run(self):
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def finish(self):
        """Stop sampling (if the thread runs) and return the maxima."""
        self.done.set()
        if self.is_alive():
            self.join()
        return {role: dict(m, proc_rss=self.proc_max[role]["rss"],
                           proc_pss=self.proc_max[role]["pss"])
                for role, m in self.role_max.items()}


# ---------------------------------------------------------------- processes we start

_live = []  # every Proc not yet stopped, for stop_all()


class Proc:
    """A server the bench started, in a session of its own. stop() signals
    it by pid, waits, then SIGKILLs whatever of its tree (as recorded, matched
    by start time) is still there."""

    def __init__(self, argv, log_path, cwd=None, env=None, stop_signal=signal.SIGTERM):
        self.argv = argv
        self.stop_signal = stop_signal
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                  start_new_session=True)
        self.pid = self.p.pid
        _live.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=10.0):
        if self not in _live:
            return
        snap = snapshot()
        ours = [(p, snap[p][2]) for p in descendants(self.pid, snap)]
        if self.p.poll() is None:
            try:
                os.kill(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + (0.0 if self.p.poll() is None else 3.0)
        while True:
            snap = snapshot()
            left = [p for p, st in ours
                    if p in snap and snap[p][2] == st and snap[p][3] != "Z"]
            if not left:
                break
            if time.monotonic() > deadline:
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 5.0
            time.sleep(0.05)
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.log.close()
        _live.remove(self)


def stop_all():
    """Stop every Proc still running, newest first (nginx before its app)."""
    for p in list(reversed(_live)):
        try:
            p.stop(grace=5.0)
        except Exception:  # keep stopping the others
            pass
