'use strict';
const test = require('node:test');
const assert = require('node:assert');
const proto = require('../lib/proto');

test('RequestFrame round trip, content_length -1 as a 10-byte varint', () => {
  const buf = proto.encodeRequestFrame({
    head: { requestId: 'r1', vars: [['REQUEST_METHOD', 'POST'], ['HTTP_X', '\xff']], urlScheme: 'https', contentLength: -1 },
    body: Buffer.from('abc'),
    end: true,
  });
  const fr = proto.decodeRequestFrame(buf);
  assert.strictEqual(fr.head.requestId, 'r1');
  assert.strictEqual(fr.head.urlScheme, 'https');
  assert.strictEqual(fr.head.contentLength, -1);
  assert.deepStrictEqual(fr.head.vars.map((v) => [v.name.toString('latin1'), v.value.toString('latin1')]),
    [['REQUEST_METHOD', 'POST'], ['HTTP_X', '\xff']]);
  assert.strictEqual(fr.body.toString(), 'abc');
  assert.strictEqual(fr.end, true);
});

test('large content_length and unknown fields are read and skipped', () => {
  const w = new proto.Writer();
  const h = new proto.Writer();
  h.bytes(1, 'id');
  h.key(4, 0); h.varint(5 * 2 ** 40);
  h.key(15, 0); h.varint(7); // unknown varint
  h.key(16, 1); h.raw(Buffer.alloc(8)); // unknown fixed64
  h.bytes(17, 'unknown'); // unknown bytes
  h.key(18, 5); h.raw(Buffer.alloc(4)); // unknown fixed32
  w.message(1, h);
  const fr = proto.decodeRequestFrame(w.finish());
  assert.strictEqual(fr.head.requestId, 'id');
  assert.strictEqual(fr.head.contentLength, 5 * 2 ** 40);
  assert.strictEqual(fr.end, false);
  assert.strictEqual(fr.body.length, 0);
});

test('truncated input is an error, not a silent frame', () => {
  const buf = proto.encodeRequestFrame({ body: Buffer.from('hello'), end: true });
  assert.throws(() => proto.decodeRequestFrame(buf.subarray(0, 4)), /truncated/);
});

test('ResponseFrame: the fields bridge reads, defaults omitted', () => {
  assert.strictEqual(proto.encodeResponseFrame({}).length, 0);
  const buf = proto.encodeResponseFrame({
    head: { status: 200, reason: 'OK', headers: [['Content-Type', 'text/plain'], ['X-Bin', '\xe9']] },
    body: Buffer.from('hello'),
    file: { path: '/tmp/f', offset: 0, length: -1 },
    error: { kind: 'app', message: 'm', traceback: 't' },
    end: true, abort: true, retire: true,
  });
  const fr = proto.decodeResponseFrame(buf);
  assert.deepStrictEqual(fr.head, { status: 200, reason: 'OK', headers: [['Content-Type', 'text/plain'], ['X-Bin', '\xe9']] });
  assert.strictEqual(fr.body.toString(), 'hello');
  assert.deepStrictEqual(fr.file, { path: '/tmp/f', offset: 0, length: -1 });
  assert.deepStrictEqual(fr.error, { kind: 'app', message: 'm', traceback: 't' });
  assert.strictEqual(fr.end && fr.abort && fr.retire, true);
});

test('hello is the bytes protoc would write', () => {
  const buf = proto.encodeResponseFrame({ head: { status: 200, reason: 'OK', headers: [['A', 'b']] }, body: Buffer.from('hi'), end: true });
  // head{1: 200, 2: "OK", 3: {1: "A", 2: "b"}} body "hi" end
  assert.strictEqual(buf.toString('hex'), '0a0f08c80112024f4b1a060a014112016212026869' + '2801');
});

test('Describe and health', () => {
  const d = { language: 'node', languageVersion: '20', interface: 'node-http/1', app: 'app.js', threads: 2, pid: 1234, server: 's', running: ['a', ''], slots: 8 };
  assert.deepStrictEqual(proto.decodeDescribeResponse(proto.encodeDescribeResponse(d)), d);
  assert.strictEqual(proto.encodeHealthCheckResponse({ status: 1 }).toString('hex'), '0801');
  assert.strictEqual(proto.decodeHealthCheckRequest(Buffer.from('0a06706c7567696e', 'hex')).service, 'plugin');
});
