'use strict';
// One request on a Slot stream: its req/res pair, the frames it sends, and
// its life from head to the close of its response (runners/README.md
// section 4).

const fs = require('fs');
const path = require('path');
const { AsyncResource } = require('async_hooks');
const { requestInfo, makeObjects, ResponseParser, checkHead } = require('./http');

const MAX_CHUNK = 1024 * 1024; // C11: response chunks stay ≤ 1 MiB

function errorFields(err) {
  if (err instanceof Error) {
    return { message: `${err.name}: ${err.message}`, traceback: err.stack || String(err) };
  }
  return { message: String(err), traceback: '' };
}

function connReset() {
  const err = new Error('aborted');
  err.code = 'ECONNRESET';
  return err;
}

// Exchange states: 'queued' (head arrived, waiting its turn), 'app' (the
// listener was called; res not closed yet), 'closed' (res 'close' emitted,
// or the request was cancelled before its turn).
class Exchange {
  // host: {als, log, onRetire(ex), onClosed(ex)}; slot: {send(frame, cb) →
  // bool, pauseInput(), resumeInput()}.
  constructor(head, slot, host) {
    this.id = head.requestId;
    this.host = host;
    this.slot = slot;
    this.info = requestInfo(head);
    this.state = 'queued';
    this.inputEnded = false;
    this.cancelled = false;
    this.retire = false;
    this.started = 0;

    // response side
    this.head = null; // parsed from Node's bytes
    this.headSent = false;
    this.pending = []; // Buffers and file markers not sent yet
    this.flushScheduled = false;
    this.ended = false; // the end frame (or error end) was sent
    this.bodySent = 0;
    this.heldWrites = []; // socket write callbacks held for back-pressure

    this.resource = host.als.run(this, () => new AsyncResource('bridge.request'));
    const parser = new ResponseParser(
      (h) => { this.head = h; },
      (b) => { this.pending.push(b); },
    );
    const objs = makeObjects(this.info, {
      write: (chunk, cb) => this.socketWrite(parser, chunk, cb),
      resume: () => { if (!this.ended) this.slot.resumeInput(); },
      destroyed: (err) => this.socketDestroyed(err),
    });
    this.socket = objs.socket;
    this.req = objs.req;
    this.res = objs.res;
    const res = this.res;
    this.req.bridge = Object.freeze({
      requestId: this.id,
      retire: () => this.requestRetire(),
      env: this.info.env,
      urlScheme: this.info.urlScheme,
    });
    res.on('finish', () => this.flush());
    res.on('close', () => this.closed());
    res.on('pipe', (src) => this.piped(src));
    this.socket.on('drain', () => {
      // what Node's http server does on socket 'drain'
      if (!res.finished && res.writableNeedDrain) {
        for (const s of Object.getOwnPropertySymbols(res)) {
          if (s.description === 'kNeedDrain') res[s] = false;
        }
        res.emit('drain');
      }
    });
  }

  // ---- input -----------------------------------------------------------

  // input takes one RequestFrame's body and end. It returns true when the
  // request's input is over (end seen).
  input(body, end) {
    if (body.length && !this.ended && this.state !== 'closed' && !this.req.destroyed) {
      this.socket.bytesRead += body.length;
      const more = this.resource.runInAsyncScope(() => this.req.push(body));
      if (!more) this.slot.pauseInput();
    }
    if (end) {
      this.inputEnded = true;
      if (!this.req.destroyed && !this.req.readableEnded) {
        this.req.complete = true;
        this.resource.runInAsyncScope(() => this.req.push(null));
      }
      this.slot.resumeInput();
      return true;
    }
    return false;
  }

  // ---- the app call ----------------------------------------------------

  start(app) {
    this.state = 'app';
    this.started = Date.now();
    this.resource.runInAsyncScope(() => {
      try {
        const r = app(this.req, this.res);
        if (r && typeof r.then === 'function') {
          r.then(null, (err) => this.fail(err));
        }
      } catch (err) {
        this.fail(err);
      }
    });
  }

  requestRetire() {
    this.retire = true;
    this.host.onRetire(this);
  }

  // ---- output ----------------------------------------------------------

  socketWrite(parser, chunk, cb) {
    if (this.ended || this.state === 'closed') {
      cb();
      return;
    }
    parser.feed(chunk);
    this.scheduleFlush();
    if (this.slot.backedUp()) {
      this.heldWrites.push(this.resource.bind(cb));
      this.slot.onDrain(() => this.releaseWrites());
    } else {
      cb();
    }
  }

  releaseWrites() {
    const held = this.heldWrites;
    this.heldWrites = [];
    for (const cb of held) cb();
  }

  scheduleFlush() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  // complete: everything the app wrote has reached the socket and end()
  // was called.
  complete() {
    const res = this.res;
    return res.finished && this.socket.writableLength === 0 && !this.socket.writableCorked &&
      (!res.outputData || res.outputData.length === 0);
  }

  // flush sends what the app produced: body chunks as their own frames
  // (≤ 1 MiB), file regions, and end; the head travels with the first of
  // them (deferred head, C9).
  flush(allowEnd = true) {
    if (this.ended || this.state === 'closed' || this.cancelled) return;
    const end = allowEnd && this.complete();
    if (!this.head) {
      if (end) this.fail(new Error('response ended without a head'), 'internal');
      return;
    }
    if (this.head.status < 200) {
      this.fail(new Error(`status ${this.head.status} cannot be a final response`), 'protocol');
      return;
    }
    if (!this.headSent && !this.head.checked) {
      this.head.checked = true;
      const bad = checkHead(this.head, (name) => this.host.log.debug(`${name} stripped from a ${this.head.status} response (G14)`, { request_id: this.id }));
      if (bad) {
        this.head.bad = true;
        this.fail(new Error(bad), 'protocol');
        return;
      }
    }
    // G13: body beyond the declared Content-Length is cut (and logged once).
    const h0 = this.head;
    let left = h0.contentLength >= 0 && this.res._hasBody !== false ? h0.contentLength - this.bodySent : Infinity;
    const cut = (n) => {
      if (n <= left) {
        left -= n;
        return n;
      }
      if (!this.overrun) {
        this.overrun = true;
        this.host.log.warn(`body longer than Content-Length ${h0.contentLength}: truncated (G13)`, { request_id: this.id });
      }
      const keep = left;
      left = 0;
      return keep;
    };
    const frames = [];
    let body = [];
    let size = 0;
    const pushBody = () => {
      if (size) frames.push({ body: body.length === 1 ? body[0] : Buffer.concat(body, size) });
      body = [];
      size = 0;
    };
    while (this.pending.length) {
      const item = this.pending[0];
      if (Buffer.isBuffer(item)) {
        this.pending.shift();
        let b = item;
        const keep = cut(b.length);
        if (keep < b.length) b = b.subarray(0, keep);
        while (b.length) {
          const n = Math.min(MAX_CHUNK - size, b.length);
          body.push(b.subarray(0, n));
          size += n;
          b = b.subarray(n);
          if (size === MAX_CHUNK) pushBody();
        }
      } else if (item.dropped) {
        this.pending.shift();
      } else if (item.ready) {
        this.pending.shift();
        pushBody();
        const n = item.file.length >= 0 ? cut(item.file.length) : item.file.length;
        if ((n > 0 || item.file.length === 0) && this.res._hasBody !== false) {
          if (n < item.file.length) item.file.length = n;
          frames.push({ file: item.file });
          this.bodySent += item.file.length;
        }
      } else {
        break; // a file whose stream has not opened yet: wait for it
      }
    }
    pushBody();
    const waiting = this.pending.length > 0;
    if (end && !waiting) {
      if (!frames.length) frames.push({});
      const frame = frames[frames.length - 1];
      frame.end = true;
      const h = this.head;
      if (h.contentLength >= 0 && this.res._hasBody !== false &&
          h.status !== 204 && h.status !== 304) {
        let sent = this.bodySent;
        for (const f of frames) if (f.body) sent += f.body.length;
        if (sent < h.contentLength) {
          frame.abort = true;
          this.host.log.warn('response ended short of its Content-Length', {
            request_id: this.id, content_length: h.contentLength, sent,
          });
        }
      }
      if (this.retire) frame.retire = true;
    }
    for (const f of frames) {
      if (!this.headSent) {
        f.head = { status: this.head.status, reason: this.head.reason, headers: this.head.headers };
        this.headSent = true;
      }
      if (f.body) this.bodySent += f.body.length;
      this.slot.send(f);
      if (f.end) {
        this.ended = true;
        this.finishExchange();
      }
    }
  }

  // fail reports an app failure: before the head, {error, end} (bridge
  // answers 500); after it, {error, end, abort} (C10).
  fail(err, kind = 'app') {
    if (this.ended || this.state === 'closed' || this.cancelled) {
      this.host.log.error('app error after its response ended', { request_id: this.id, ...errorFields(err) });
      return;
    }
    // What the app wrote before it failed leaves first (it may be corked).
    while (this.socket.writableCorked) this.socket.uncork();
    for (const item of this.pending) if (!Buffer.isBuffer(item) && !item.ready) item.dropped = true;
    if (this.head && this.head.status >= 200 && !this.head.bad && this.pending.length) this.flush(false);
    const frame = { error: { kind, ...errorFields(err) }, end: true };
    if (this.headSent) frame.abort = true;
    if (this.retire) frame.retire = true;
    this.ended = true;
    this.slot.send(frame);
    this.finishExchange(true);
  }

  // piped: `someStream.pipe(res)`. A fs.ReadStream that has read nothing
  // yet and names a regular file becomes a file frame (C13) with the exact
// range (the file's size read now, for a stream without `end`): the stream is
  // made to yield no bytes (so pipe() or pipeline() ends res as usual), and
  // bridge sends the file's bytes itself.
  piped(src) {
    if (!(src instanceof fs.ReadStream) || typeof src.path !== 'string') return;
    if (src.bytesRead !== 0 || src.readableLength !== 0 || src.readableEncoding || src.destroyed) return;
    if (this.ended || this.res._hasBody === false) return;
    const file = path.resolve(src.path);
    let size;
    try {
      const st = fs.statSync(file);
      if (!st.isFile()) return;
      size = st.size;
    } catch (_) {
      return; // let the stream report its own error
    }
    const start = src.start || 0;
    const last = Number.isFinite(src.end) ? Math.min(src.end, size - 1) : size - 1;
    const length = Math.max(0, last - start + 1);
    const res = this.res;
    // end() on a response whose head is not stored yet would declare
    // Content-Length: 0 (no bytes went through res): declare the file's.
    if (!res.headersSent && !res.hasHeader('content-length') && !res.hasHeader('transfer-encoding')) {
      res.setHeader('Content-Length', String(length));
    }
    const marker = { file: { path: file, offset: start, length }, ready: false, dropped: false };
    // Bytes written before pipe() go first.
    while (this.socket.writableCorked) this.socket.uncork();
    this.pending.push(marker);
    src._read = function readNothing() {
      marker.ready = true;
      this.push(null);
    };
    src.once('error', () => {
      marker.dropped = true;
      this.scheduleFlush();
    });
  }

  // ---- the end of the request ----------------------------------------

  // finishExchange runs once the response's last frame was sent: the body
  // is closed (res 'close') once Node has emitted 'finish', or at once
  // after an error.
  finishExchange(failed) {
    this.slot.responseDone(this);
    const close = () => {
      if (!this.inputEnded && !this.req.destroyed) {
        this.req.destroy();
      } else if (!this.req._consuming && !this.req.readableEnded && typeof this.req._dump === 'function') {
        this.req._dump();
      }
      this.socket.destroy();
    };
    if (failed || this.res.writableFinished || !this.res.finished) {
      process.nextTick(close);
    } else {
      this.res.once('finish', () => process.nextTick(close));
    }
  }

  socketDestroyed(err) {
    if (this.ended || this.cancelled || this.state !== 'app') return;
    // res.destroy(err), req.socket.destroy(), pipeline() failing into res.
    this.fail(err || new Error('the app destroyed the response before its end'));
  }

  // cancel: bridge cancelled the stream (client gone, deadline passed).
  cancel() {
    if (this.cancelled || this.state === 'closed') return;
    this.cancelled = true;
    this.releaseWrites();
    if (this.state === 'queued') {
      this.closed();
      return;
    }
    if (!this.req.destroyed && !(this.req.complete && this.req.readableEnded)) {
      this.req.destroy(connReset());
    }
    this.socket.destroy();
  }

  closed() {
    if (this.state === 'closed') return;
    const wasInApp = this.state === 'app';
    this.state = 'closed';
    this.releaseWrites();
    this.host.onClosed(this, wasInApp);
  }
}

module.exports = { Exchange, MAX_CHUNK };
