'use strict';
// Test plumbing: start runner.js as bridge would (environment, cwd, the
// handshake line) and talk to it over its unix socket with grpc-js, frame
// by frame.

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const proto = require('../lib/proto');

const RUNNER = path.join(__dirname, '..', 'runner.js');
const identity = (b) => b;

const Client = grpc.makeGenericClientConstructor({
  Describe: {
    path: '/bridge.v1.Runner/Describe', requestStream: false, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: proto.decodeDescribeResponse,
  },
  Slot: {
    path: '/bridge.v1.Runner/Slot', requestStream: true, responseStream: true,
    requestSerialize: proto.encodeRequestFrame, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: proto.decodeResponseFrame,
  },
  Check: {
    path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  },
}, 'Runner');

// startRunner spawns the runner; resolves with {proc, client, lines (stderr
// JSON lines), sock, stop()} once the handshake line arrived.
function startRunner(app, opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-runner-test-'));
  const env = {
    ...process.env,
    BRIDGE_PLUGIN: 'runner-v1',
    PLUGIN_PROTOCOL_VERSIONS: '1',
    PLUGIN_UNIX_SOCKET_DIR: dir,
    BRIDGE_THREADS: String(opts.threads || 1),
    BRIDGE_SLOTS: String(opts.slots || opts.threads || 1),
    BRIDGE_LOG_LEVEL: opts.logLevel || 'info',
    BRIDGE_GRACE: opts.grace || '10s',
    ...(opts.env || {}),
  };
  const proc = spawn(process.execPath, [RUNNER, app], {
    cwd: opts.cwd || path.join(__dirname, 'apps'),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  let errBuf = '';
  proc.stderr.on('data', (d) => {
    errBuf += d;
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      try { lines.push(JSON.parse(line)); } catch (_) { lines.push({ raw: line }); }
    }
  });
  let out = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no handshake in 10s; stderr: ${JSON.stringify(lines)}`)), 10000);
    const early = (code) => {
      clearTimeout(timer);
      // let stderr drain first
      setTimeout(() => reject(Object.assign(new Error(`runner exited (${code}) before its handshake: ${JSON.stringify(lines)}`), { lines, out })), 50);
    };
    proc.on('exit', early);
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      proc.removeListener('exit', early);
      const handshake = out.slice(0, nl + 1);
      const parts = handshake.trim().split('|');
      const client = new Client(`unix:${parts[3]}`, grpc.credentials.createInsecure());
      const r = {
        proc, client, lines, handshake, exited, stdout: () => out,
        describe: () => new Promise((res, rej) => client.Describe(Buffer.alloc(0), (e, d) => (e ? rej(e) : res(d)))),
        health: () => new Promise((res, rej) => client.Check(Buffer.alloc(0), (e, d) => (e ? rej(e) : res(d)))),
        slot: () => new SlotClient(client.Slot()),
        async stop() {
          client.close();
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGTERM');
            const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(t);
          }
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
      resolve(r);
    });
  });
}

let seq = 0;

// SlotClient sends requests on one Slot stream and reads their frames.
class SlotClient {
  constructor(call) {
    this.call = call;
    this.frames = [];
    this.waiters = [];
    this.error = null;
    call.on('data', (f) => this.push(f));
    call.on('error', (e) => { this.error = e; this.push(null); });
    call.on('end', () => this.push(null));
  }

  push(f) {
    if (this.waiters.length) this.waiters.shift()(f);
    else this.frames.push(f);
  }

  next(timeoutMs = 5000) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no frame within ' + timeoutMs + ' ms')), timeoutMs);
      this.waiters.push((f) => { clearTimeout(t); resolve(f); });
    });
  }

  // request sends one request (head, body in pieces, end) and returns
  // {frames, status, reason, headers, body, error, file, abort, retire}.
  async request({ method = 'GET', uri = '/', headers = {}, body = null, scheme = 'http', id, pieces } = {}) {
    const [pathInfo, query = ''] = uri.split('?');
    const vars = [
      ['REQUEST_METHOD', method], ['REQUEST_URI', uri], ['SCRIPT_NAME', ''],
      ['PATH_INFO', decodeURIComponent(pathInfo)], ['QUERY_STRING', query],
      ['SERVER_NAME', 'example.com'], ['SERVER_PORT', scheme === 'https' ? '443' : '80'],
      ['SERVER_PROTOCOL', 'HTTP/1.1'], ['REMOTE_ADDR', '127.0.0.9'], ['REMOTE_PORT', '40000'],
      ['HTTP_HOST', 'example.com'],
    ];
    const buf = body == null ? null : Buffer.from(body);
    if (buf && buf.length) vars.push(['CONTENT_LENGTH', String(buf.length)]);
    for (const [k, v] of Object.entries(headers)) {
      const name = k.toUpperCase().replace(/-/g, '_');
      vars.push([name === 'CONTENT_TYPE' ? name : 'HTTP_' + name, v]);
    }
    const requestId = id || `test-${process.pid}-${++seq}`;
    const head = { requestId, vars, urlScheme: scheme, contentLength: buf ? buf.length : 0 };
    if (!buf || !buf.length) {
      this.call.write({ head, end: true });
    } else {
      const size = pieces || buf.length;
      this.call.write({ head });
      for (let i = 0; i < buf.length; i += size) this.call.write({ body: buf.subarray(i, i + size) });
      this.call.write({ end: true });
    }
    return this.read(requestId);
  }

  async read(requestId) {
    const frames = [];
    for (;;) {
      const f = await this.next();
      if (!f) throw new Error(`stream ended before the response's end: ${this.error}`);
      frames.push(f);
      if (f.end) break;
    }
    const head = frames.find((f) => f.head);
    return {
      requestId,
      frames,
      status: head ? head.head.status : 0,
      reason: head ? head.head.reason : '',
      headers: head ? head.head.headers : [],
      header: (name) => {
        const h = head && head.head.headers.find(([n]) => n.toLowerCase() === name.toLowerCase());
        return h ? h[1] : undefined;
      },
      body: Buffer.concat(frames.map((f) => f.body)),
      error: frames.find((f) => f.error)?.error || null,
      file: frames.find((f) => f.file)?.file || null,
      abort: frames.some((f) => f.abort),
      retire: frames.some((f) => f.retire),
    };
  }

  close() {
    this.call.end();
  }
}

module.exports = { startRunner, RUNNER };
