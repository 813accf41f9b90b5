'use strict';
// The request listener's view of a bridge request: a real
// http.IncomingMessage and http.ServerResponse, attached to a BridgeSocket
// instead of a TCP socket. Node's own ServerResponse serialises the head
// and body as HTTP/1.1 bytes into the socket; ResponseParser reads them back
// into a status, headers and body chunks, which the Exchange (exchange.js)
// turns into frames. So everything an app may do to `res` behaves as in
// Node's http server (implicit headers, writeHead forms, HEAD and 204/304
// without body, Content-Length for end(data), cork, 'finish'/'close',
// errors for writes after end), and an Express app that swaps the objects'
// prototypes keeps working.

const http = require('http');
const { Duplex } = require('stream');

// ---- request ---------------------------------------------------------

// Header names as Node's parser would give them in rawHeaders: the client's
// case is lost in CGI variables, so the conventional case is rebuilt
// (HTTP_X_FORWARDED_FOR → X-Forwarded-For).
function headerName(cgi) {
  return cgi
    .toLowerCase()
    .split('_')
    .map((w) => (w ? w[0].toUpperCase() + w.slice(1) : w))
    .join('-');
}

// requestInfo maps a RequestHead (vars as Buffers) to what the request
// listener sees. It is pure, for the tests.
function requestInfo(head) {
  const env = Object.create(null);
  const rawHeaders = [];
  for (const v of head.vars) {
    const name = v.name.toString('latin1');
    const value = v.value.toString('latin1');
    if (!(name in env)) env[name] = value;
    if (name.startsWith('HTTP_')) {
      rawHeaders.push(headerName(name.slice(5)), value);
    } else if (name === 'CONTENT_TYPE' || name === 'CONTENT_LENGTH') {
      rawHeaders.push(headerName(name), value);
    }
  }
  const has = (lower) => {
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (rawHeaders[i].toLowerCase() === lower) return true;
    }
    return false;
  };
  // Body parsers (type-is's hasBody) look for one of these two headers.
  const cl = head.contentLength;
  if (cl < 0 && !has('transfer-encoding') && !has('content-length')) {
    rawHeaders.push('Transfer-Encoding', 'chunked');
  } else if (cl > 0 && !has('content-length') && !has('transfer-encoding')) {
    rawHeaders.push('Content-Length', String(cl));
  }

  let url = env.REQUEST_URI;
  if (!url) {
    url = encodeURI((env.SCRIPT_NAME || '') + (env.PATH_INFO || '')) || '/';
    if (env.QUERY_STRING) url += '?' + env.QUERY_STRING;
  }
  const proto = /^HTTP\/(\d+)\.(\d+)$/.exec(env.SERVER_PROTOCOL || '');
  const major = proto ? Number(proto[1]) : 1;
  const minor = proto ? Number(proto[2]) : 1;
  const remoteAddress = env.REMOTE_ADDR || '';
  return {
    requestId: head.requestId,
    method: env.REQUEST_METHOD || 'GET',
    url,
    httpVersionMajor: major,
    httpVersionMinor: minor,
    httpVersion: `${major}.${minor}`,
    rawHeaders,
    env,
    urlScheme: head.urlScheme || 'http',
    contentLength: cl,
    remoteAddress,
    remotePort: env.REMOTE_PORT ? Number(env.REMOTE_PORT) : undefined,
    remoteFamily: remoteAddress.includes(':') ? 'IPv6' : 'IPv4',
    localAddress: env.SERVER_ADDR,
    localPort: env.SERVER_PORT ? Number(env.SERVER_PORT) : undefined,
  };
}

// Node's rules for req.headers, for runtimes without
// IncomingMessage.prototype._addHeaderLines (Node has it from 0.x to 22).
const DISCARD_DUPLICATES = new Set([
  'content-type', 'content-length', 'user-agent', 'referer', 'host',
  'authorization', 'proxy-authorization', 'if-modified-since',
  'if-unmodified-since', 'from', 'location', 'max-forwards',
  'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires',
]);

function joinHeaders(rawHeaders) {
  const headers = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    if (name === 'set-cookie') {
      (headers[name] ||= []).push(value);
    } else if (!(name in headers)) {
      headers[name] = value;
    } else if (DISCARD_DUPLICATES.has(name)) {
      // first one wins
    } else if (name === 'cookie') {
      headers[name] += '; ' + value;
    } else {
      headers[name] += ', ' + value;
    }
  }
  return headers;
}

// ---- the socket --------------------------------------------------------

// BridgeSocket stands where Node's http server puts a net.Socket. Its
// writable side receives the HTTP/1.1 bytes of the response; its readable
// side carries nothing (the request body is pushed into the
// IncomingMessage directly, as Node's parser does), but resume() is how
// IncomingMessage asks for more body (flow control).
class BridgeSocket extends Duplex {
  constructor(info, hooks) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.hooks = hooks; // {write(chunk, cb), resume(), destroyed(err)}
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.remoteFamily = info.remoteFamily;
    this.localAddress = info.localAddress;
    this.localPort = info.localPort;
    if (info.urlScheme === 'https') this.encrypted = true;
    this.bytesRead = 0;
    this.timeout = 0;
    this.connecting = false;
    // Errors are reported through the exchange, never thrown from here.
    this.on('error', () => {});
  }

  _read() {}

  resume() {
    this.hooks.resume();
    return this;
  }

  pause() {
    return this;
  }

  _write(chunk, encoding, cb) {
    this.hooks.write(chunk, cb);
  }

  _writev(chunks, cb) {
    const bufs = chunks.map((c) => c.chunk);
    this.hooks.write(bufs.length === 1 ? bufs[0] : Buffer.concat(bufs), cb);
  }

  _destroy(err, cb) {
    this.hooks.destroyed(err);
    cb(err);
  }

  get bytesWritten() {
    return this.writableLength;
  }

  address() {
    return { address: this.localAddress, port: this.localPort, family: this.remoteFamily };
  }

  setTimeout(ms, cb) {
    this.timeout = ms;
    if (cb) this.once('timeout', cb);
    return this;
  }

  setNoDelay() { return this; }
  setKeepAlive() { return this; }
  ref() { return this; }
  unref() { return this; }
  destroySoon() { this.destroy(); }
}

// ---- the response bytes ------------------------------------------------

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding',
  'te', 'trailer', 'upgrade',
]);

// ResponseParser reads what Node's ServerResponse writes: interim 1xx heads
// (writeContinue, writeEarlyHints: dropped), then the head, then the body,
// raw or chunked (as Node encodes a body of unknown length; the trailers
// of addTrailers() are dropped). onHead({status, reason, headers,
// contentLength}) and onBody(buf) are called as bytes arrive.
class ResponseParser {
  constructor(onHead, onBody) {
    this.onHead = onHead;
    this.onBody = onBody;
    this.state = 'head';
    this.buf = Buffer.alloc(0);
    this.chunkLeft = 0;
  }

  feed(data) {
    if (this.state === 'body') {
      if (data.length) this.onBody(data);
      return;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    for (;;) {
      if (this.state === 'head') {
        const i = this.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const text = this.buf.subarray(0, i).toString('latin1');
        this.buf = this.buf.subarray(i + 4);
        const head = parseHead(text);
        if (head.status >= 100 && head.status < 200 && head.status !== 101) continue;
        this.state = head.chunked ? 'chunk-size' : 'body';
        this.onHead(head);
        if (this.state === 'body') {
          const rest = this.buf;
          this.buf = Buffer.alloc(0);
          if (rest.length) this.onBody(rest);
          return;
        }
      } else if (this.state === 'chunk-size') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const size = parseInt(this.buf.subarray(0, i).toString('latin1').split(';')[0], 16);
        this.buf = this.buf.subarray(i + 2);
        if (!size) {
          this.state = 'trailer'; // 0\r\n[trailers]\r\n: dropped
        } else {
          this.chunkLeft = size;
          this.state = 'chunk-data';
        }
      } else if (this.state === 'chunk-data') {
        if (!this.buf.length) return;
        const n = Math.min(this.chunkLeft, this.buf.length);
        this.onBody(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.chunkLeft -= n;
        if (this.chunkLeft) return;
        this.state = 'chunk-crlf';
      } else if (this.state === 'chunk-crlf') {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.state = 'chunk-size';
      } else {
        this.buf = Buffer.alloc(0); // trailer, or anything after it
        return;
      }
    }
  }
}

// parseHead parses "HTTP/1.1 200 OK\r\nName: value\r\n…" as Node writes it
// (already validated by Node: no CR/LF in values, names are tokens).
function parseHead(text) {
  const lines = text.split('\r\n');
  const m = /^HTTP\/\d\.\d (\d{3})(?: (.*))?$/.exec(lines[0]);
  const head = { status: m ? Number(m[1]) : 0, reason: m ? m[2] || '' : '', headers: [], chunked: false, contentLength: -1 };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const c = line.indexOf(':');
    if (c <= 0) continue;
    const name = line.slice(0, c);
    const value = line.slice(c + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'transfer-encoding') {
      if (/(^|,)\s*chunked\s*$/i.test(value)) head.chunked = true;
      continue;
    }
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === 'content-length' && /^\d+$/.test(value)) head.contentLength = Number(value);
    head.headers.push([name, value]);
  }
  return head;
}

// checkHead applies the rules every shim applies to a final head before it
// leaves (docs/conformance.md): it returns an error message for a head the
// app may not send, or null after cleaning it in place.
// - G9: Node's placeholder reason 'unknown' (a code missing from
//   http.STATUS_CODES) becomes the empty reason.
// - G11: a Status header is refused (Node checks names and values itself).
// - G13: Content-Length values must be digits and, if repeated, equal.
// - G14: 204 and 304 lose Content-Length and Content-Type (Node drops the
//   body; Transfer-Encoding is hop-by-hop, already dropped).
function checkHead(head, onStrip) {
  if (head.reason === 'unknown' && !http.STATUS_CODES[head.status]) head.reason = '';
  let cl = null;
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (lower === 'status') return 'a Status response header is not allowed (G11)';
    if (lower === 'content-length') {
      if (!/^\d+$/.test(value)) return `invalid Content-Length ${JSON.stringify(value)} (G13)`;
      if (cl !== null && cl !== value) return `several Content-Length values (${cl}, ${value}) (G13)`;
      cl = value;
    }
  }
  if (head.status === 204 || head.status === 304) {
    head.headers = head.headers.filter(([name]) => {
      const lower = name.toLowerCase();
      if (lower !== 'content-length' && lower !== 'content-type') return true;
      if (onStrip) onStrip(name);
      return false;
    });
    head.contentLength = -1;
  }
  return null;
}

// ---- construction ------------------------------------------------------

// makeObjects builds req, res and their socket for one request.
function makeObjects(info, hooks) {
  const socket = new BridgeSocket(info, hooks);
  const req = new http.IncomingMessage(socket);
  req.method = info.method;
  req.url = info.url;
  req.httpVersionMajor = info.httpVersionMajor;
  req.httpVersionMinor = info.httpVersionMinor;
  req.httpVersion = info.httpVersion;
  req.upgrade = false;
  if (typeof req._addHeaderLines === 'function') {
    req._addHeaderLines(info.rawHeaders, info.rawHeaders.length);
  } else {
    req.rawHeaders = info.rawHeaders;
    req.headers = joinHeaders(info.rawHeaders);
  }

  const res = new http.ServerResponse(req);
  // Node keeps its defaults: end(data) without a Content-Length gets one,
  // a streamed body is chunk-encoded (ResponseParser decodes it). bridge
  // and nginx frame the body for the client and add Date themselves.
  res.shouldKeepAlive = false;
  res.sendDate = false;
  // G21: header strings go out as latin-1. Node glues the head to a first
  // body chunk that is a string and writes both in the chunk's encoding, so
  // a value with 0x80-0xFF would leave as UTF-8; such a chunk is made a
  // Buffer first, and Node writes the head on its own, as latin-1.
  const send = res._send;
  if (typeof send === 'function') {
    res._send = function _send(data, encoding, callback, byteLength) {
      if (typeof data === 'string' && encoding !== 'latin1' && !this._headerSent &&
          typeof this._header === 'string' && /[^\x00-\x7f]/.test(this._header)) {
        data = Buffer.from(data, encoding || 'utf8');
      }
      return send.call(this, data, encoding, callback, byteLength);
    };
  }
  res.assignSocket(socket);
  return { socket, req, res };
}

module.exports = {
  requestInfo,
  headerName,
  joinHeaders,
  parseHead,
  checkHead,
  ResponseParser,
  BridgeSocket,
  makeObjects,
};
