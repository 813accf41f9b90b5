"""Checks on what the app passes to start_response (W16-W18, G10, G11, G13).

Everything is checked before it leaves the shim: Go trusts ResponseHead
(the proto says "already validated by the shim") and would otherwise have
to choose between forwarding an injected header and silently repairing it.
"""
import re


class ProtocolError(AssertionError):
    """The app broke a WSGI rule (bad status, headers or body type).

    An AssertionError, as in wsgiref, so apps and middleware that expect the
    reference server's behaviour see the same exception class.
    """


# RFC 9110 token.
_name_ok = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# HTAB, SP, VCHAR and obs-text (G11); nothing above U+00FF (W17).
_value_ok = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z").match
# Three digits, one space, a reason without control characters (W16).
_status_ok = re.compile(r"([0-9]{3}) ([\x20-\x7e\x80-\xff]*)\Z").match
_digits = re.compile(r"[0-9]+\Z").match

# wsgiref.util._hoppish: the app may not set these (W18); "trailer" is the
# RFC 9110 spelling of wsgiref's "trailers".
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailers", "trailer", "transfer-encoding", "upgrade",
))


# Apps send the same status and header list on request after request, and
# checking them costs more than the rest of start_response: the results for
# the last few distinct ones are kept, keyed by their exact str contents.
_CACHE_MAX = 64
_status_cache = {}
_headers_cache = {}


def check_status(status):
    """Return (code, reason) for a WSGI status string, or raise ProtocolError."""
    if type(status) is str:
        hit = _status_cache.get(status)
        if hit is not None:
            return hit
        result = _check_status(status)
        if len(_status_cache) >= _CACHE_MAX:
            _status_cache.clear()
        _status_cache[status] = result
        return result
    return _check_status(status)


def _check_status(status):
    if not isinstance(status, str):
        raise ProtocolError("status must be a str, not %s" % type(status).__name__)
    m = _status_ok(status)
    if m is None:
        raise ProtocolError("invalid status %r: want 3 digits, a space and a reason "
                            "without control characters" % (status,))
    code = int(m.group(1))
    if code < 200:
        # Final status only (G10): a 1xx is not something an app may send.
        raise ProtocolError("invalid status %r: a final status must be 200..999" % (status,))
    return code, m.group(2)


def check_headers(headers):
    """Return (pairs, content_length) or raise ProtocolError.

    pairs is a new list of (name, value) as latin-1 bytes, in the app's
    order, with a repeated identical Content-Length collapsed to one line.
    content_length is an int, or None when the app did not set one.
    """
    if type(headers) is list:
        try:
            key = tuple(headers)
            hit = _headers_cache.get(key)
        except TypeError:  # an unhashable item: not a valid header anyway
            return _check_headers(headers)
        if hit is not None:
            return list(hit[0]), hit[1]
        pairs, length = _check_headers(headers)
        if all(type(name) is str and type(value) is str for name, value in key):
            if len(_headers_cache) >= _CACHE_MAX:
                _headers_cache.clear()
            _headers_cache[key] = (tuple(pairs), length)
        return pairs, length
    return _check_headers(headers)


def _check_headers(headers):
    if type(headers) is not list:
        raise ProtocolError("response_headers must be a list, not %s" % type(headers).__name__)
    pairs = []
    length = None
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise ProtocolError("each response header must be a (name, value) tuple, not %r" % (item,))
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            raise ProtocolError("header name and value must be str: %r" % (item,))
        if not _name_ok(name):
            raise ProtocolError("invalid header name %r" % (name,))
        if not _value_ok(value):
            raise ProtocolError("invalid characters in the value of header %r" % (name,))
        lower = name.lower()
        if lower in HOP_BY_HOP:
            raise ProtocolError("hop-by-hop header %r is not allowed" % (name,))
        if lower == "status":
            raise ProtocolError("a 'Status' header is not allowed")
        if lower == "content-length":
            if not _digits(value):
                raise ProtocolError("invalid Content-Length %r" % (value,))
            n = int(value)
            if length is not None:
                if n != length:
                    raise ProtocolError("conflicting Content-Length values %d and %d" % (length, n))
                continue
            length = n
        pairs.append((name.encode("latin-1"), value.encode("latin-1")))
    return pairs, length
