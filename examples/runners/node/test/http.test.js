'use strict';
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { requestInfo, joinHeaders, parseHead, ResponseParser, makeObjects } = require('../lib/http');

const v = (pairs) => pairs.map(([n, val]) => ({ name: Buffer.from(n, 'latin1'), value: Buffer.from(val, 'latin1') }));

test('requestInfo: method, url, version, headers in arrival order', () => {
  const info = requestInfo({
    requestId: 'r', urlScheme: 'https', contentLength: 3,
    vars: v([['REQUEST_METHOD', 'POST'], ['REQUEST_URI', '/a%20b?x=1'], ['PATH_INFO', '/a b'], ['QUERY_STRING', 'x=1'],
      ['SCRIPT_NAME', ''], ['SERVER_PROTOCOL', 'HTTP/1.0'], ['SERVER_PORT', '443'], ['REMOTE_ADDR', '::1'], ['REMOTE_PORT', '5'],
      ['CONTENT_TYPE', 'text/plain'], ['CONTENT_LENGTH', '3'], ['HTTP_X_FORWARDED_FOR', '1.2.3.4'], ['HTTP_HOST', 'h']]),
  });
  assert.strictEqual(info.method, 'POST');
  assert.strictEqual(info.url, '/a%20b?x=1');
  assert.strictEqual(info.httpVersion, '1.0');
  assert.deepStrictEqual(info.rawHeaders, ['Content-Type', 'text/plain', 'Content-Length', '3', 'X-Forwarded-For', '1.2.3.4', 'Host', 'h']);
  assert.strictEqual(info.remoteAddress, '::1');
  assert.strictEqual(info.remoteFamily, 'IPv6');
  assert.strictEqual(info.remotePort, 5);
  assert.strictEqual(info.localPort, 443);
});

test('requestInfo: url without REQUEST_URI; chunked upload gets Transfer-Encoding', () => {
  const info = requestInfo({
    requestId: 'r', urlScheme: 'http', contentLength: -1,
    vars: v([['REQUEST_METHOD', 'PUT'], ['SCRIPT_NAME', '/app'], ['PATH_INFO', '/a b'], ['QUERY_STRING', 'q=1'], ['SERVER_PROTOCOL', 'HTTP/1.1']]),
  });
  assert.strictEqual(info.url, '/app/a%20b?q=1');
  assert.deepStrictEqual(info.rawHeaders, ['Transfer-Encoding', 'chunked']);
});

test("joinHeaders follows Node's rules", () => {
  const raw = ['Set-Cookie', 'a', 'Set-Cookie', 'b', 'Cookie', 'x', 'Cookie', 'y', 'Host', 'h1', 'Host', 'h2', 'X', '1', 'X', '2'];
  const want = { 'set-cookie': ['a', 'b'], cookie: 'x; y', host: 'h1', x: '1, 2' };
  assert.deepStrictEqual(joinHeaders(raw), want);
  const m = new http.IncomingMessage(null);
  m._addHeaderLines(raw, raw.length);
  assert.deepStrictEqual({ ...m.headers }, want);
});

// G12: Connection, Transfer-Encoding and Keep-Alive are dropped from the head.
test('parseHead drops hop-by-hop headers and notes chunked', () => {
  const h = parseHead('HTTP/1.1 201 Created Here\r\nContent-Type: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nKeep-Alive: x\r\nContent-Length: 12\r\nX-E: ');
  assert.strictEqual(h.status, 201);
  assert.strictEqual(h.reason, 'Created Here');
  assert.deepStrictEqual(h.headers, [['Content-Type', 'a'], ['Content-Length', '12'], ['X-E', '']]);
  const all = parseHead('HTTP/1.1 200 OK\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nX: 1');
  assert.deepStrictEqual(all.headers, [['X', '1']]);
  assert.strictEqual(h.chunked, true);
  assert.strictEqual(h.contentLength, 12);
});

test('ResponseParser: interim heads dropped, chunked body decoded across writes', () => {
  const heads = [];
  const body = [];
  const p = new ResponseParser((h) => heads.push(h), (b) => body.push(b.toString()));
  const bytes = 'HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n';
  for (let i = 0; i < bytes.length; i += 5) p.feed(Buffer.from(bytes.slice(i, i + 5)));
  assert.strictEqual(heads.length, 1);
  assert.strictEqual(heads[0].status, 200);
  assert.strictEqual(body.join(''), 'abcdefg');
});

test("makeObjects: Node's own ServerResponse writes the head and body into the socket", async () => {
  const written = [];
  const info = requestInfo({ requestId: 'r', urlScheme: 'https', contentLength: 0,
    vars: v([['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/'], ['SERVER_PROTOCOL', 'HTTP/1.1'], ['HTTP_HOST', 'h']]) });
  const { req, res, socket } = makeObjects(info, { write: (c, cb) => { written.push(Buffer.from(c)); cb(); }, resume() {}, destroyed() {} });
  assert.ok(req instanceof http.IncomingMessage);
  assert.ok(res instanceof http.ServerResponse);
  assert.strictEqual(req.socket.encrypted, true);
  assert.strictEqual(req.headers.host, 'h');
  res.setHeader('X-A', '1');
  assert.strictEqual(res.getHeader('x-a'), '1');
  assert.strictEqual(res.headersSent, false);
  res.end('hello');
  assert.strictEqual(res.headersSent, true);
  assert.strictEqual(res.writableEnded, true);
  await new Promise((r) => res.on('finish', r));
  const text = Buffer.concat(written).toString('latin1');
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text, /\r\nX-A: 1\r\n/);
  assert.match(text, /\r\nContent-Length: 5\r\n/);
  assert.doesNotMatch(text, /\r\nDate: /);
  assert.ok(text.endsWith('\r\n\r\nhello'));
  socket.destroy();
});
