'use strict';
// The G items of docs/conformance.md ("Behaviour shared by every shim and
// front") on the Node runner, over its real gRPC socket.

const test = require('node:test');
const assert = require('node:assert');
const { startRunner } = require('./helpers');

const qs = (o) => new URLSearchParams(o).toString();

test('shared rules', async (t) => {
  const r = await startRunner('shared_rules.js', { env: { BRIDGE_TEST_PROCESS_ONLY: 'leak-canary' } });
  t.after(() => r.stop());
  const s = r.slot();
  t.after(() => s.close());
  const get = (uri, method) => s.request({ uri, method });
  const refused = (res, what) => {
    assert.ok(res.error, `${what}: an error`);
    assert.strictEqual(res.frames.length, 1, `${what}: one frame`);
    assert.strictEqual(res.frames[0].head, null, `${what}: no head`);
    assert.strictEqual(res.body.length, 0, `${what}: no body`);
  };

  // G9: the reason comes from Node's table of names unless the app set its
  // own (statusMessage, kept as WSGI's is); a code the table lacks gets the
  // empty reason, not Node's placeholder 'unknown'.
  await t.test('G9 reason phrases', async () => {
    for (const [s, want] of [[200, 'OK'], [404, 'Not Found'], [500, 'Internal Server Error'], [299, ''], [599, ''], [999, '']]) {
      const res = await get('/status?' + qs({ s }));
      assert.strictEqual(res.status, s);
      assert.strictEqual(res.reason, want, `status ${s}`);
    }
    const own = await get('/status?' + qs({ s: 404, m: 'Nope' }));
    assert.strictEqual(own.reason, 'Nope');
  });

  // G10: a final status is 200..999; anything else, 1xx included, is an
  // error before the head (bridge answers 500).
  await t.test('G10 status out of range is an error before the head', async () => {
    for (const s of [0, 99, 100, 101, 103, 199, 1000]) refused(await get('/status?' + qs({ s })), `status ${s}`);
    for (const s of [200, 999]) assert.strictEqual((await get('/status?' + qs({ s }))).status, s);
  });

  // G11: names are tokens; values allow HTAB, space, visible ASCII and
  // 0x80-0xFF, nothing else; a Status header is refused.
  await t.test('G11 header names and values are checked; Status is refused', async () => {
    const bad = [['X Y', '1'], ['X:Y', '1'], ['X', 'a\rb'], ['X', 'a\nb'], ['X', 'a\0b'], ['X', 'a\x01b'], ['X', 'a\x7fb'], ['Status', '200'], ['status', '200 OK']];
    for (const [n, v] of bad) refused(await get('/header?' + qs({ n, v })), `${JSON.stringify(n)}: ${JSON.stringify(v)}`);
    for (const v of ['a\tb c', 'caf\xe9', '~!']) {
      const res = await get('/header?' + qs({ n: 'X-Ok', v }));
      assert.strictEqual(res.error, null, JSON.stringify(v));
      assert.strictEqual(res.header('X-Ok'), v);
    }
  });

  // G13: Content-Length all digits, one value; a longer body is cut at it
  // and logged; a shorter one aborts (runner.test.js, '/short').
  await t.test('G13 Content-Length must add up', async () => {
    for (const v of [['abc'], ['3x'], ['-1'], ['3', '4']]) {
      refused(await get('/content-length?' + qs(v.map((x) => ['v', x]).concat([['b', 'abc']]))), `Content-Length ${JSON.stringify(v)}`);
    }
    const same = await get('/content-length?' + qs([['v', '3'], ['v', '3'], ['b', 'abc']]));
    assert.strictEqual(same.error, null);
    assert.strictEqual(same.body.toString(), 'abc');
    const over = await get('/overrun');
    assert.strictEqual(over.error, null);
    assert.strictEqual(over.abort, false);
    assert.strictEqual(over.header('Content-Length'), '3');
    assert.strictEqual(over.body.toString(), 'abc');
    await new Promise((res) => setTimeout(res, 50));
    assert.ok(r.lines.some((l) => l.request_id === over.requestId && /truncated/.test(l.message)), 'the cut is logged');
  });

  // G14: no body for HEAD, 204 and 304; 204 and 304 lose Content-Length,
  // Transfer-Encoding and Content-Type.
  await t.test('G14 no body for HEAD, 204 and 304', async () => {
    for (const s of [204, 304]) {
      const res = await get('/no-body?' + qs({ s }));
      assert.strictEqual(res.status, s);
      assert.strictEqual(res.body.length, 0);
      assert.deepStrictEqual(res.headers, [], `status ${s}: no Content-Length or Content-Type`);
      assert.strictEqual(res.abort, false);
    }
    const head = await get('/no-body?' + qs({ s: 200 }), 'HEAD');
    assert.strictEqual(head.body.length, 0);
    assert.strictEqual(head.header('Content-Length'), '5');
    assert.strictEqual(head.abort, false);
  });

  // G18: req and res are new for each request on a stream, what the app
  // hung on them is gone, and no process environment is in req.bridge.env
  // or the headers.
  await t.test('G18 nothing leaks from one request to the next', async () => {
    const first = JSON.parse((await get('/leak')).body);
    const second = JSON.parse((await get('/leak')).body);
    assert.strictEqual(second.sameReq, false);
    assert.strictEqual(second.sameRes, false);
    assert.strictEqual(second.mark, null);
    assert.ok(!second.bridgeEnvKeys.includes('MUTATED'));
    for (const seen of [first, second]) {
      assert.ok(seen.bridgeEnvKeys.includes('REQUEST_METHOD'));
      assert.ok(!seen.bridgeEnvKeys.some((k) => k === 'BRIDGE_TEST_PROCESS_ONLY' || k === 'PATH' || k === 'PLUGIN_UNIX_SOCKET_DIR'));
      assert.ok(!seen.headerNames.some((k) => /process|path|plugin/i.test(k)));
    }
  });

  // G21: header strings go out as latin-1 bytes, body bytes unaltered.
  await t.test('G21 bytes on the wire', async () => {
    const res = await get('/bytes');
    assert.strictEqual(res.header('X-Latin1'), 'caf\xe9');
    // with a string body too (Node would write the head in its encoding)
    const str = await get('/header?' + qs({ n: 'X-Latin1', v: 'caf\xe9' }));
    assert.strictEqual(str.header('X-Latin1'), 'caf\xe9');
    assert.strictEqual(str.body.toString(), 'x');
    assert.deepStrictEqual([...res.body], [0x61, 0x0d, 0x0a, 0x62, 0x0a, 0x00, 0xff, 0x0d, 0x0a]);
  });
});
