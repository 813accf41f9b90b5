'use strict';
// The conformance kit app (runners/kit/README.md) as a plain Node request
// listener: nothing but (req, res), req.bridge, and Node's own modules.
//
// In Node the "body object" of the kit is the response itself: a call
// "returns a body" when it goes on to answer through res, and that body is
// "closed" when res emits 'close' (exactly once per request, whether it
// finished, failed or was cancelled).

const fs = require('fs');
const os = require('os');
const path = require('path');

console.log('KIT-IMPORT-PRINT');

const stats = new Map(); // request id → {calls, bodies, closes}
let active = 0;
let maxActive = 0;

function statsFor(id) {
  let s = stats.get(id);
  if (!s) {
    s = { calls: 0, bodies: 0, closes: 0 };
    stats.set(id, s);
  }
  return s;
}

let kitFile = null;
function fileBody() {
  if (!kitFile) {
    const p = path.join(os.tmpdir(), `bridge-kit-node-${process.pid}.txt`);
    fs.writeFileSync(p, 'bridge-kit-file\n'.repeat(20000));
    process.on('exit', () => fs.rmSync(p, { force: true })); // not one temp file per run left behind
    kitFile = p;
  }
  return kitFile;
}

function num(q, name, dflt) {
  const v = q.get(name);
  if (v === null || v === '') return dflt;
  const n = Number(v);
  return Number.isFinite(n) ? n : dflt;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = function kit(req, res) {
  const id = req.bridge.requestId;
  const s = statsFor(id);
  s.calls++;
  active++;
  if (active > maxActive) maxActive = active;
  let done = false;
  const leave = () => {
    if (!done) {
      done = true;
      active--;
    }
  };

  const url = new URL(req.url, 'http://kit');
  const q = url.searchParams;
  // Routes go by path alone, whatever the method: the checks also send a
  // 6 MiB POST to /hello, whose body the app never reads (C11).
  const route = url.pathname;

  if (route === '/error-call') {
    leave();
    throw new Error('KIT-SECRET error-call');
  }

  if (route === '/hello') {
    // One chunk, not a counted body; any method; the body is never read.
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('hello');
    leave();
    return;
  }

  // Every other route answers through res: that is its counted body.
  s.bodies++;
  res.on('close', () => {
    s.closes++;
    leave();
  });

  switch (route) {
    case '/echo':
    case '/echo-stream': {
      const n = num(q, 'read', 65536);
      const lazy = url.pathname === '/echo-stream';
      const pieces = [];
      res.statusCode = 200;
      res.setHeader('Content-Type', 'application/octet-stream');
      req.on('readable', () => {
        let piece;
        while ((piece = req.read(Math.min(n, req.readableLength || n))) !== null) {
          if (lazy) res.write(piece);
          else pieces.push(piece);
        }
      });
      req.on('end', () => {
        if (!lazy) {
          res.cork();
          for (const p of pieces) res.write(p);
          res.uncork();
        }
        res.end();
      });
      return;
    }

    case '/stream': {
      const n = num(q, 'n', 3);
      const ms = num(q, 'ms', 0);
      res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Accel-Buffering': 'no' });
      let i = 0;
      let timer = null;
      const next = () => {
        i++;
        res.write(`chunk-${i}\n`);
        if (n > 0 && i >= n) {
          res.end();
          return;
        }
        timer = setTimeout(next, ms);
      };
      res.on('close', () => clearTimeout(timer));
      next();
      return;
    }

    case '/sleep':
      sleep(num(q, 'ms', 0)).then(() => {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('slept');
      });
      return;

    case '/deferred':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('');
      sleep(num(q, 'ms', 0)).then(() => res.end('late'));
      return;

    case '/error-before':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('');
      throw new Error('KIT-SECRET error-before');

    case '/error-after':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('partial');
      throw new Error('KIT-SECRET error-after');

    case '/file': {
      const skip = num(q, 'skip', 0);
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      fs.createReadStream(fileBody(), { start: skip }).pipe(res);
      return;
    }

    case '/print':
      console.log('KIT-STDOUT');
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('printed');
      return;

    case '/retire':
      req.bridge.retire();
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('bye');
      return;

    case '/stats': {
      const t = stats.get(q.get('id') || '') || { calls: 0, bodies: 0, closes: 0 };
      const body = JSON.stringify({ calls: t.calls, bodies: t.bodies, closes: t.closes, max_active: maxActive });
      if (q.get('reset') === '1') maxActive = 0;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(body);
      return;
    }

    default:
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
  }
};
