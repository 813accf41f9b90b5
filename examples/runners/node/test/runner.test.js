'use strict';
// The runner process, as bridge starts it, over its real gRPC socket.

const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');
const { startRunner, RUNNER } = require('./helpers');

const APPS = path.join(__dirname, 'apps');
const STATIC = fs.readFileSync(path.join(APPS, 'static.txt'));

const json = (r) => JSON.parse(r.body.toString());

test('without the magic cookie: one JSON error line, exit 1, no handshake (C3)', () => {
  const r = spawnSync(process.execPath, [RUNNER, 'plain.js'], { cwd: APPS, env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 10000 });
  assert.strictEqual(r.status, 1);
  assert.strictEqual(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  assert.strictEqual(lines.length, 1);
  assert.strictEqual(JSON.parse(lines[0]).level, 'error');
});

// G24: an app that does not load leaves no ready runner (no handshake, exit
// 1) and its error, with the stack, is the last log line.
test('an app that fails to load: its error and stack logged, exit 1 (G24)', async () => {
  await assert.rejects(startRunner('no-such-app.js'), (err) => {
    assert.match(err.message, /exited \(1\) before its handshake/);
    assert.ok(err.lines.some((l) => l.level === 'error' && /not found/.test(l.message)));
    assert.ok(err.lines.some((l) => l.level === 'error' && l.traceback), 'the stack is logged');
    return true;
  });
});

test('plain listener', async (t) => {
  const r = await startRunner('plain.js', { threads: 2, slots: 4 });
  t.after(() => r.stop());

  await t.test('handshake, health, Describe', async () => {
    assert.match(r.handshake, /^1\|1\|unix\|\/.+\.sock\|grpc\n$/);
    assert.strictEqual((await r.health()).toString('hex'), '0801');
    const d = await r.describe();
    assert.strictEqual(d.language, 'node');
    assert.strictEqual(d.interface, 'node-http/1');
    assert.strictEqual(d.app, 'plain.js');
    assert.strictEqual(d.threads, 2);
    assert.strictEqual(d.slots, 4);
    assert.strictEqual(d.pid, r.proc.pid);
    assert.deepStrictEqual(d.running, []);
  });

  await t.test('req is an IncomingMessage built from the CGI variables', async () => {
    const s = r.slot();
    const res = await s.request({ uri: '/info?x=1', scheme: 'https', headers: { 'X-Forwarded-For': '10.0.0.1', Cookie: 'a=1; b=2' } });
    s.close();
    assert.strictEqual(res.frames.length, 1, 'one frame for a small response (C7)');
    const info = json(res);
    assert.strictEqual(info.method, 'GET');
    assert.strictEqual(info.url, '/info?x=1');
    assert.strictEqual(info.httpVersion, '1.1');
    assert.strictEqual(info.headers.host, 'example.com');
    assert.strictEqual(info.headers['x-forwarded-for'], '10.0.0.1');
    assert.strictEqual(info.headers.cookie, 'a=1; b=2');
    assert.ok(info.rawHeaders.includes('X-Forwarded-For'));
    assert.strictEqual(info.remoteAddress, '127.0.0.9');
    assert.strictEqual(info.remotePort, 40000);
    assert.strictEqual(info.encrypted, true);
    assert.strictEqual(info.requestId, res.requestId);
    assert.strictEqual(info.isIncomingMessage, true);
    assert.deepStrictEqual(res.headers.filter(([n]) => n === 'Set-Cookie'), [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']]);
    assert.strictEqual(res.header('Connection'), undefined, 'no hop-by-hop headers');
  });

  await t.test('requests one after another on one stream; body in many frames', async () => {
    const s = r.slot();
    const body = Buffer.alloc(300 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = i % 251;
    const want = require('crypto').createHash('sha256').update(body).digest('hex');
    for (let i = 0; i < 3; i++) {
      const res = await s.request({ method: 'POST', uri: '/upload', body, pieces: 7000 + i });
      assert.strictEqual(res.body.toString(), `${body.length} ${want}`);
    }
    s.close();
  });

  await t.test('a 2.5 MiB body leaves in frames of at most 1 MiB', async () => {
    const s = r.slot();
    const res = await s.request({ uri: '/big' });
    s.close();
    assert.strictEqual(res.body.length, 2.5 * 1024 * 1024);
    assert.ok(res.frames.every((f) => f.body.length <= 1024 * 1024));
    assert.strictEqual(res.frames.length, 3);
  });

  await t.test('an error thrown from a timer belongs to its request: error before the head', async () => {
    const s = r.slot();
    const res = await s.request({ uri: '/async-throw' });
    assert.strictEqual(res.frames.length, 1);
    assert.strictEqual(res.frames[0].head, null);
    assert.strictEqual(res.error.kind, 'app');
    assert.match(res.error.message, /thrown from a timer/);
    assert.strictEqual(res.abort, false);
    // the runner keeps serving on the same stream
    const again = await s.request({ uri: '/status' });
    assert.strictEqual(again.status, 418);
    assert.strictEqual(again.reason, 'Short And Stout');
    s.close();
  });

  await t.test('a rejected listener promise is an app error', async () => {
    const s = r.slot();
    const res = await s.request({ uri: '/reject' });
    s.close();
    assert.match(res.error.message, /rejected listener/);
  });

  await t.test('res.destroy(err) after the head: error, end, abort', async () => {
    const s = r.slot();
    const res = await s.request({ uri: '/destroy' });
    s.close();
    assert.strictEqual(res.frames[0].head.status, 200);
    assert.strictEqual(res.frames[0].body.toString(), 'some');
    assert.match(res.error.message, /app gave up/);
    assert.strictEqual(res.abort, true);
  });

  await t.test('a body short of its Content-Length ends with abort', async () => {
    const s = r.slot();
    const res = await s.request({ uri: '/short' });
    s.close();
    assert.strictEqual(res.body.toString(), '12345');
    assert.strictEqual(res.abort, true);
    assert.strictEqual(res.error, null);
  });

  await t.test('HEAD: no body, Content-Length kept, no abort', async () => {
    const s = r.slot();
    const res = await s.request({ method: 'HEAD', uri: '/head' });
    s.close();
    assert.strictEqual(res.header('Content-Length'), '5');
    assert.strictEqual(res.body.length, 0);
    assert.strictEqual(res.abort, false);
  });

  // G12: the app's Connection and Transfer-Encoding never leave the runner.
  await t.test('early hints are dropped; a chunked body set by the app is decoded', async () => {
    const s = r.slot();
    const hints = await s.request({ uri: '/hints' });
    assert.strictEqual(hints.status, 200);
    assert.strictEqual(hints.body.toString(), 'after hints');
    const te = await s.request({ uri: '/te' });
    s.close();
    assert.strictEqual(te.body.toString(), 'one two');
    assert.strictEqual(te.header('Transfer-Encoding'), undefined);
    assert.strictEqual(te.header('Connection'), undefined);
  });

  await t.test('fs.createReadStream piped into res becomes a file frame (C13)', async () => {
    const s = r.slot();
    const range = await s.request({ uri: '/file-range' });
    assert.strictEqual(range.file.path, path.join(APPS, 'static.txt'));
    assert.strictEqual(range.file.offset, 7);
    assert.strictEqual(range.file.length, 4);
    assert.strictEqual(range.header('Content-Length'), '4');
    assert.strictEqual(range.body.length, 0);
    assert.strictEqual(range.abort, false);
    const whole = await s.request({ uri: '/file-pipeline' });
    assert.deepStrictEqual(whole.file, { path: path.join(APPS, 'static.txt'), offset: 0, length: STATIC.length });
    assert.strictEqual(whole.header('Content-Length'), String(STATIC.length));
    assert.strictEqual(whole.header('Content-Type'), 'text/plain');
    const missing = await s.request({ uri: '/file-missing' });
    s.close();
    assert.strictEqual(missing.file, null);
    assert.strictEqual(missing.error.kind, 'app');
    assert.match(missing.error.message, /ENOENT/);
  });
});

test('Express app', async (t) => {
  const r = await startRunner('express_app.js', { threads: 4, slots: 8 });
  t.after(() => r.stop());
  const s = r.slot();
  t.after(() => s.close());

  await t.test('JSON route, req.protocol and req.ip from the socket', async () => {
    const res = await s.request({ uri: '/api/hello?name=node', scheme: 'https' });
    assert.strictEqual(res.status, 200);
    assert.match(res.header('Content-Type'), /^application\/json/);
    const body = json(res);
    assert.strictEqual(body.hello, 'node');
    assert.strictEqual(body.requestId, res.requestId);
    assert.strictEqual(body.protocol, 'https');
    assert.strictEqual(body.ip, '127.0.0.9');
    assert.strictEqual(res.frames.length, 1);
  });

  await t.test('POST body parsed by express.json()', async () => {
    const payload = JSON.stringify({ name: 'widget', tags: ['a', 'b'] });
    const res = await s.request({ method: 'POST', uri: '/api/items', body: payload, headers: { 'Content-Type': 'application/json' }, pieces: 5 });
    assert.strictEqual(res.status, 201);
    assert.deepStrictEqual(json(res), { created: 'widget', tags: ['a', 'b'], contentType: 'application/json' });
  });

  await t.test('404 from the fallback handler', async () => {
    const res = await s.request({ uri: '/nope' });
    assert.strictEqual(res.status, 404);
    assert.strictEqual(res.body.toString(), 'no route for GET /nope');
  });

  await t.test("a throwing route gets Express's own 500 page", async () => {
    const res = await s.request({ uri: '/boom' });
    assert.strictEqual(res.status, 500);
    assert.strictEqual(res.error, null);
  });

  await t.test('streamed response: one frame per tick', async () => {
    const res = await s.request({ uri: '/stream?n=3&ms=50' });
    assert.strictEqual(res.body.toString(), 'tick 1\ntick 2\ntick 3\n');
    assert.ok(res.frames.filter((f) => f.body.length).length >= 3, `frames: ${res.frames.length}`);
  });

  await t.test('res.sendFile becomes a file frame', async () => {
    const res = await s.request({ uri: '/static' });
    assert.strictEqual(res.status, 200);
    assert.ok(res.file, 'a file frame');
    assert.strictEqual(res.file.path, path.join(APPS, 'static.txt'));
    assert.strictEqual(res.file.offset, 0);
    assert.strictEqual(res.file.length, STATIC.length);
    assert.strictEqual(res.header('Content-Length'), String(STATIC.length));
  });
});

test('retire: the end frame says so, and the process exits 0 after it (C21)', async () => {
  const r = await startRunner('plain.js');
  try {
    const s = r.slot();
    const res = await s.request({ uri: '/retire' });
    assert.strictEqual(res.body.toString(), 'bye');
    assert.strictEqual(res.retire, true);
    const { code } = await Promise.race([r.exited, new Promise((_, rej) => setTimeout(() => rej(new Error('no exit within 5s')), 5000))]);
    assert.strictEqual(code, 0);
  } finally {
    await r.stop();
  }
});

test('SIGTERM with a request in flight: it finishes, then exit 0 (C20)', async () => {
  const r = await startRunner('express_app.js');
  try {
    const s = r.slot();
    const pending = s.request({ uri: '/stream?n=3&ms=150' });
    await new Promise((res) => setTimeout(res, 100));
    r.proc.kill('SIGTERM');
    const res = await pending;
    assert.strictEqual(res.body.toString(), 'tick 1\ntick 2\ntick 3\n');
    const { code } = await r.exited;
    assert.strictEqual(code, 0);
  } finally {
    await r.stop();
  }
});

test('what the app prints becomes log lines on stderr; stdout holds only the handshake (C2)', async () => {
  const r = await startRunner('../../kit/app.js', { cwd: APPS });
  try {
    const s = r.slot();
    await s.request({ uri: '/print' });
    s.close();
    await new Promise((res) => setTimeout(res, 100));
    assert.strictEqual(r.stdout(), r.handshake);
    assert.ok(r.lines.some((l) => l.message === 'KIT-IMPORT-PRINT' && l.stream === 'stdout'));
    assert.ok(r.lines.some((l) => l.message === 'KIT-STDOUT' && l.stream === 'stdout' && l.request_id));
  } finally {
    await r.stop();
  }
});
