'use strict';
// A hand-written protobuf codec for the few messages the runner exchanges:
// bridge.v1 (proto/bridge/v1/runner.proto), grpc.health.v1 and
// google.protobuf.Empty. Decoders skip unknown fields, as protobuf requires;
// encoders omit fields at their default value (proto3).

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

// ---- decoding ----------------------------------------------------------

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }

  done() {
    return this.pos >= this.buf.length;
  }

  // varint returns the value as a Number when it fits in 53 bits, else a
  // BigInt; int64() turns either into a signed Number.
  varint() {
    const buf = this.buf;
    let result = 0;
    let shift = 0;
    while (shift < 49) {
      if (this.pos >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[this.pos++];
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
    }
    let big = BigInt(result);
    let bshift = BigInt(shift);
    for (;;) {
      if (this.pos >= buf.length) throw new Error('protobuf: truncated varint');
      if (bshift > 63n) throw new Error('protobuf: varint too long');
      const b = buf[this.pos++];
      big |= BigInt(b & 0x7f) << bshift;
      if (b < 0x80) return big;
      bshift += 7n;
    }
  }

  int64() {
    const v = this.varint();
    if (typeof v === 'number') return v;
    return Number(BigInt.asIntN(64, v));
  }

  bytes() {
    const n = Number(this.varint());
    const end = this.pos + n;
    if (end > this.buf.length) throw new Error('protobuf: truncated field');
    const out = this.buf.subarray(this.pos, end);
    this.pos = end;
    return out;
  }

  string() {
    return this.bytes().toString('utf8');
  }

  skip(wire) {
    switch (wire) {
      case VARINT: this.varint(); break;
      case I64: this.pos += 8; break;
      case LEN: this.bytes(); break;
      case I32: this.pos += 4; break;
      default: throw new Error(`protobuf: unsupported wire type ${wire}`);
    }
    if (this.pos > this.buf.length) throw new Error('protobuf: truncated field');
  }

  // fields calls fn(fieldNumber, wireType) for each field; fn reads the value
  // or returns false to have it skipped.
  fields(fn) {
    while (!this.done()) {
      const key = Number(this.varint());
      const field = Math.floor(key / 8);
      const wire = key & 7;
      if (fn(field, wire) === false) this.skip(wire);
    }
  }
}

function decodeVar(buf) {
  const v = { name: Buffer.alloc(0), value: Buffer.alloc(0) };
  const r = new Reader(buf);
  r.fields((f, w) => {
    if (f === 1 && w === LEN) v.name = r.bytes();
    else if (f === 2 && w === LEN) v.value = r.bytes();
    else return false;
  });
  return v;
}

function decodeRequestHead(buf) {
  const h = { requestId: '', vars: [], urlScheme: '', contentLength: 0 };
  const r = new Reader(buf);
  r.fields((f, w) => {
    if (f === 1 && w === LEN) h.requestId = r.string();
    else if (f === 2 && w === LEN) h.vars.push(decodeVar(r.bytes()));
    else if (f === 3 && w === LEN) h.urlScheme = r.string();
    else if (f === 4 && w === VARINT) h.contentLength = r.int64();
    else return false;
  });
  return h;
}

// decodeRequestFrame: {head: RequestHead|null, body: Buffer (maybe empty), end: bool}
function decodeRequestFrame(buf) {
  const fr = { head: null, body: EMPTY, end: false };
  const r = new Reader(buf);
  r.fields((f, w) => {
    if (f === 1 && w === LEN) fr.head = decodeRequestHead(r.bytes());
    else if (f === 2 && w === LEN) fr.body = r.bytes();
    else if (f === 3 && w === VARINT) fr.end = r.varint() !== 0;
    else return false;
  });
  return fr;
}

function decodeHealthCheckRequest(buf) {
  const m = { service: '' };
  const r = new Reader(buf);
  r.fields((f, w) => {
    if (f === 1 && w === LEN) m.service = r.string();
    else return false;
  });
  return m;
}

// Messages whose content the runner ignores (Empty, DescribeRequest).
function decodeIgnored() {
  return {};
}

// ---- encoding ----------------------------------------------------------

const EMPTY = Buffer.alloc(0);

class Writer {
  constructor() {
    this.parts = [];
    this.length = 0;
  }

  raw(buf) {
    this.parts.push(buf);
    this.length += buf.length;
  }

  // varintBytes encodes a non-negative integer (Number up to 2^53), or a
  // negative one as its 64-bit two's complement (10 bytes).
  varint(n) {
    const out = [];
    if (n < 0) {
      let v = BigInt.asUintN(64, BigInt(n));
      while (v >= 0x80n) {
        out.push(Number(v & 0x7fn) | 0x80);
        v >>= 7n;
      }
      out.push(Number(v));
    } else {
      while (n >= 0x80) {
        out.push((n % 0x80) | 0x80);
        n = Math.floor(n / 0x80);
      }
      out.push(n);
    }
    this.raw(Buffer.from(out));
  }

  key(field, wire) {
    this.varint(field * 8 + wire);
  }

  uint(field, n) {
    if (!n) return;
    this.key(field, VARINT);
    this.varint(n);
  }

  bool(field, b) {
    if (!b) return;
    this.key(field, VARINT);
    this.varint(1);
  }

  bytes(field, buf, always) {
    if (buf == null || (!buf.length && !always)) return;
    if (typeof buf === 'string') buf = Buffer.from(buf, 'utf8');
    this.key(field, LEN);
    this.varint(buf.length);
    this.raw(buf);
  }

  message(field, w) {
    this.key(field, LEN);
    this.varint(w.length);
    for (const p of w.parts) this.raw(p);
  }

  finish() {
    return this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.length);
  }
}

function latin1(s) {
  return Buffer.isBuffer(s) ? s : Buffer.from(String(s), 'latin1');
}

// encodeResponseFrame takes
//   {head?: {status, reason, headers: [[name, value]…]}, body?: Buffer,
//    file?: {path, offset, length}, error?: {kind, message, traceback},
//    end?, abort?, retire?}
// Header names and values are strings of bytes (latin-1) or Buffers.
function encodeResponseFrame(fr) {
  const w = new Writer();
  if (fr.head) {
    const h = new Writer();
    h.uint(1, fr.head.status);
    h.bytes(2, fr.head.reason || '');
    for (const [name, value] of fr.head.headers || []) {
      const hw = new Writer();
      hw.bytes(1, latin1(name));
      hw.bytes(2, latin1(value));
      h.message(3, hw);
    }
    w.message(1, h);
  }
  if (fr.body && fr.body.length) w.bytes(2, fr.body);
  if (fr.file) {
    const f = new Writer();
    f.bytes(1, fr.file.path);
    if (fr.file.offset) { f.key(2, VARINT); f.varint(fr.file.offset); }
    if (fr.file.length) { f.key(3, VARINT); f.varint(fr.file.length); }
    w.message(3, f);
  }
  if (fr.error) {
    const e = new Writer();
    e.bytes(1, fr.error.kind || 'app');
    e.bytes(2, fr.error.message || '');
    e.bytes(3, fr.error.traceback || '');
    w.message(4, e);
  }
  w.bool(5, fr.end);
  w.bool(6, fr.abort);
  w.bool(7, fr.retire);
  return w.finish();
}

function encodeDescribeResponse(d) {
  const w = new Writer();
  w.bytes(1, d.language || '');
  w.bytes(2, d.languageVersion || '');
  w.bytes(3, d.interface || '');
  w.bytes(4, d.app || '');
  w.uint(5, d.threads || 0);
  w.uint(6, d.pid || 0);
  w.bytes(7, d.server || '');
  for (const id of d.running || []) w.bytes(8, id, true);
  w.uint(9, d.slots || 0);
  return w.finish();
}

// HealthCheckResponse{status: SERVING} is field 1 = 1.
function encodeHealthCheckResponse(m) {
  const w = new Writer();
  w.uint(1, m.status);
  return w.finish();
}

function encodeEmpty() {
  return EMPTY;
}

// For tests: encoders of the messages bridge sends, decoders of the ones it
// receives.
function encodeRequestFrame(fr) {
  const w = new Writer();
  if (fr.head) {
    const h = new Writer();
    h.bytes(1, fr.head.requestId || '');
    for (const [name, value] of fr.head.vars || []) {
      const vw = new Writer();
      vw.bytes(1, latin1(name));
      vw.bytes(2, latin1(value));
      h.message(2, vw);
    }
    h.bytes(3, fr.head.urlScheme || '');
    if (fr.head.contentLength) { h.key(4, VARINT); h.varint(fr.head.contentLength); }
    w.message(1, h);
  }
  if (fr.body && fr.body.length) w.bytes(2, fr.body);
  w.bool(3, fr.end);
  return w.finish();
}

function decodeResponseFrame(buf) {
  const fr = { head: null, body: EMPTY, file: null, error: null, end: false, abort: false, retire: false };
  const r = new Reader(buf);
  r.fields((f, w) => {
    if (f === 1 && w === LEN) {
      const h = { status: 0, reason: '', headers: [] };
      const hr = new Reader(r.bytes());
      hr.fields((hf, hw) => {
        if (hf === 1 && hw === VARINT) h.status = Number(hr.varint());
        else if (hf === 2 && hw === LEN) h.reason = hr.string();
        else if (hf === 3 && hw === LEN) {
          const v = decodeVar(hr.bytes());
          h.headers.push([v.name.toString('latin1'), v.value.toString('latin1')]);
        } else return false;
      });
      fr.head = h;
    } else if (f === 2 && w === LEN) fr.body = r.bytes();
    else if (f === 3 && w === LEN) {
      const file = { path: '', offset: 0, length: 0 };
      const fr2 = new Reader(r.bytes());
      fr2.fields((ff, fw) => {
        if (ff === 1 && fw === LEN) file.path = fr2.string();
        else if (ff === 2 && fw === VARINT) file.offset = fr2.int64();
        else if (ff === 3 && fw === VARINT) file.length = fr2.int64();
        else return false;
      });
      fr.file = file;
    } else if (f === 4 && w === LEN) {
      const e = { kind: '', message: '', traceback: '' };
      const er = new Reader(r.bytes());
      er.fields((ef, ew) => {
        if (ef === 1 && ew === LEN) e.kind = er.string();
        else if (ef === 2 && ew === LEN) e.message = er.string();
        else if (ef === 3 && ew === LEN) e.traceback = er.string();
        else return false;
      });
      fr.error = e;
    } else if (f === 5 && w === VARINT) fr.end = r.varint() !== 0;
    else if (f === 6 && w === VARINT) fr.abort = r.varint() !== 0;
    else if (f === 7 && w === VARINT) fr.retire = r.varint() !== 0;
    else return false;
  });
  return fr;
}

function decodeDescribeResponse(buf) {
  const d = { language: '', languageVersion: '', interface: '', app: '', threads: 0, pid: 0, server: '', running: [], slots: 0 };
  const r = new Reader(buf);
  const strings = { 1: 'language', 2: 'languageVersion', 3: 'interface', 4: 'app', 7: 'server' };
  r.fields((f, w) => {
    if (strings[f] && w === LEN) d[strings[f]] = r.string();
    else if (f === 5 && w === VARINT) d.threads = Number(r.varint());
    else if (f === 6 && w === VARINT) d.pid = Number(r.varint());
    else if (f === 8 && w === LEN) d.running.push(r.string());
    else if (f === 9 && w === VARINT) d.slots = Number(r.varint());
    else return false;
  });
  return d;
}

module.exports = {
  Reader,
  Writer,
  decodeRequestFrame,
  decodeRequestHead,
  decodeHealthCheckRequest,
  decodeIgnored,
  encodeResponseFrame,
  encodeDescribeResponse,
  encodeHealthCheckResponse,
  encodeEmpty,
  encodeRequestFrame,
  decodeResponseFrame,
  decodeDescribeResponse,
};
