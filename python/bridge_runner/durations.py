"""Go's duration format, as bridge writes BRIDGE_GRACE (time.Duration.String:
"30s", "1m30s", "500ms"). The same algorithm as Go's time.ParseDuration, so
that the shims and bridge agree on every value; the shared cases are in
testdata/durations.txt."""

UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
         "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
LIMIT = 1 << 63


def parse_duration(s):
    """Nanoseconds in s (an int); ValueError if s is not a Go duration."""
    orig, neg = s, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError("invalid duration %r" % orig)
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s[:1] == ".":
            i = 1
            while i < len(s) and s[i].isascii() and s[i].isdigit():
                i += 1
            frac, s = s[1:i], s[i:]
        if not whole and not frac:
            raise ValueError("invalid duration %r" % orig)
        i = 0
        while i < len(s) and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        unit, s = UNITS.get(s[:i]), s[i:]
        if unit is None:
            raise ValueError("invalid duration %r: missing or unknown unit" % orig)
        v = int(whole or "0") * unit
        # Go keeps fraction digits while they fit in 63 bits and scales in
        # floating point, truncating.
        f, scale = 0, 1.0
        for d in frac:
            if f > (LIMIT - 1) // 10:
                break
            f, scale = f * 10 + int(d), scale * 10
        if f:
            v += int(float(f) * (float(unit) / scale))
        total += v
        if total > LIMIT:
            raise ValueError("invalid duration %r: out of range" % orig)
    if neg:
        return -total
    if total > LIMIT - 1:
        raise ValueError("invalid duration %r: out of range" % orig)
    return total
