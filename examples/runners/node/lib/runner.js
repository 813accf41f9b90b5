'use strict';
// The runner: the gRPC services (runners/README.md section 3), the FIFO of
// requests waiting for one of BRIDGE_THREADS turns (section 7), Describe
// and `running` (section 6), SIGUSR1, and shutdown (section 9).

const grpc = require('@grpc/grpc-js');
const { AsyncLocalStorage } = require('async_hooks');
const proto = require('./proto');
const { Slot } = require('./slot');

const VERSION = '0.1.0';
const GRPC_VERSION = (() => {
  try {
    return require('@grpc/grpc-js/package.json').version;
  } catch (_) {
    return 'unknown';
  }
})();

// parseDuration reads a Go duration ("30s", "1m30s", "500ms") as ms.
function parseDuration(s) {
  if (!s) return NaN;
  const units = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  let total = 0;
  let matched = '';
  let m;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * units[m[2]];
    matched += m[0];
  }
  if (s === '0') return 0;
  return matched === s ? total : NaN;
}

const identity = (b) => b;

class Runner {
  // opts: {app, appName, threads, slots, log, graceMs, exit(code)}
  constructor(opts) {
    this.app = opts.app;
    this.appName = opts.appName;
    this.threads = Math.max(1, opts.threads | 0);
    this.slots = Math.max(this.threads, opts.slots | 0);
    this.log = opts.log;
    this.graceMs = opts.graceMs;
    this.exit = opts.exit || ((code) => process.exit(code));
    this.als = new AsyncLocalStorage();
    this.queue = []; // exchanges waiting their turn, in arrival order
    this.inApp = new Set(); // exchanges whose listener was called and whose res is not closed
    this.exchanges = new Set(); // every exchange not closed yet
    this.streams = new Set();
    this.draining = false;
    this.exiting = false;
    this.server = null;
  }

  // ---- scheduling ------------------------------------------------------

  enqueue(ex) {
    this.exchanges.add(ex);
    this.queue.push(ex);
    this.pump();
  }

  pump() {
    while (this.inApp.size < this.threads && this.queue.length) {
      const ex = this.queue.shift();
      if (ex.state !== 'queued' || ex.cancelled) continue; // C16: never reaches the app
      this.inApp.add(ex);
      ex.start(this.app);
    }
  }

  onClosed(ex, wasInApp) {
    this.exchanges.delete(ex);
    if (wasInApp) this.inApp.delete(ex);
    else {
      const i = this.queue.indexOf(ex);
      if (i >= 0) this.queue.splice(i, 1);
    }
    process.nextTick(() => {
      this.pump();
      this.maybeExit();
    });
  }

  onRetire(ex) {
    this.log.info('the app asked to retire: exiting after the requests in flight', { request_id: ex.id });
    this.drain('retire');
  }

  slotGone(slot) {
    this.streams.delete(slot);
  }

  // ---- Describe ----------------------------------------------------------

  describe() {
    return {
      language: 'node',
      languageVersion: process.versions.node,
      interface: 'node-http/1',
      app: this.appName,
      threads: this.threads,
      slots: this.slots,
      pid: process.pid,
      server: `bridge-node/${VERSION} grpc-js/${GRPC_VERSION}`,
      running: [...this.inApp].map((ex) => ex.id),
    };
  }

  // ---- SIGUSR1 (C18) ---------------------------------------------------

  // A single event loop has one stack, and it is this handler's: what is
  // useful is what each request in flight is doing, one line each.
  dumpStacks() {
    const now = Date.now();
    const inflight = [...this.exchanges];
    const summary = inflight.map((ex) =>
      `${ex.id} ${ex.state} ${ex.info.method} ${ex.info.url}` +
      (ex.started ? ` in the app for ${now - ex.started} ms` : ' waiting its turn'));
    let resources = '';
    if (typeof process.getActiveResourcesInfo === 'function') {
      resources = `\nactive resources: ${process.getActiveResourcesInfo().join(', ')}`;
    }
    this.log.warn('stack dump (SIGUSR1)', {
      thread: 'main',
      traceback: `${new Error('stack dump').stack}\nrequests in flight (${inflight.length}):\n  ${summary.join('\n  ')}${resources}`,
    });
    for (const ex of inflight) {
      this.log.warn('stack dump (SIGUSR1)', {
        thread: 'main',
        request_id: ex.id,
        traceback: `request ${ex.info.method} ${ex.info.url}: ${ex.state}` +
          (ex.started ? `, in the app for ${now - ex.started} ms` : ', waiting its turn') +
          `; response head ${ex.headSent ? 'sent' : 'not sent'}, ${ex.bodySent} body bytes sent`,
      });
    }
  }

  // ---- shutdown (C19, C20, C21) ------------------------------------------

  drain(why) {
    if (!this.draining) {
      this.draining = true;
      this.log.info('draining: no new requests; exiting when those in flight are done', { why, in_flight: this.exchanges.size });
      if (Number.isFinite(this.graceMs) && this.graceMs > 0) {
        // bridge kills the group at BRIDGE_GRACE: leave a little before.
        const margin = Math.min(1000, this.graceMs / 10);
        setTimeout(() => {
          this.log.warn('grace period over: exiting with requests in flight', { in_flight: this.exchanges.size });
          this.finish(0);
        }, Math.max(0, this.graceMs - margin)).unref();
      }
    }
    process.nextTick(() => this.maybeExit());
  }

  maybeExit() {
    if (!this.draining || this.exiting || this.exchanges.size) return;
    this.finish(0);
  }

  finish(code) {
    if (this.exiting) return;
    this.exiting = true;
    for (const slot of [...this.streams]) slot.close();
    const done = () => this.exit(code);
    if (!this.server) return done();
    const force = setTimeout(() => {
      this.server.forceShutdown();
      done();
    }, 1500);
    this.server.tryShutdown(() => {
      clearTimeout(force);
      done();
    });
  }

  // ---- the gRPC server -------------------------------------------------

  services() {
    const unary = (path, dec, enc) => ({
      path, requestStream: false, responseStream: false,
      requestSerialize: identity, requestDeserialize: dec,
      responseSerialize: enc, responseDeserialize: identity,
    });
    return [
      [{
        Describe: unary('/bridge.v1.Runner/Describe', proto.decodeIgnored, proto.encodeDescribeResponse),
        Slot: {
          path: '/bridge.v1.Runner/Slot', requestStream: true, responseStream: true,
          requestSerialize: identity, requestDeserialize: identity,
          responseSerialize: identity, responseDeserialize: identity,
        },
      }, {
        Describe: (call, cb) => cb(null, this.describe()),
        Slot: (call) => {
          const slot = new Slot(call, this);
          this.streams.add(slot);
        },
      }],
      [{
        Check: unary('/grpc.health.v1.Health/Check', proto.decodeHealthCheckRequest, proto.encodeHealthCheckResponse),
      }, {
        Check: (call, cb) => cb(null, { status: 1 }), // SERVING
      }],
      [{
        Shutdown: unary('/plugin.GRPCController/Shutdown', proto.decodeIgnored, proto.encodeEmpty),
      }, {
        Shutdown: (call, cb) => {
          cb(null, {});
          this.drain('Shutdown');
        },
      }],
      [{
        StreamStdio: {
          path: '/plugin.GRPCStdio/StreamStdio', requestStream: false, responseStream: true,
          requestSerialize: identity, requestDeserialize: proto.decodeIgnored,
          responseSerialize: identity, responseDeserialize: identity,
        },
      }, {
        // The app's output goes to stderr as log lines: nothing to stream.
        StreamStdio: (call) => call.end(),
      }],
    ];
  }

  // listen starts the gRPC server on a unix socket; resolves when bound.
  listen(socketPath) {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.max_send_message_length': 8 * 1024 * 1024,
    });
    for (const [def, impl] of this.services()) server.addService(def, impl);
    this.server = server;
    return new Promise((resolve, reject) => {
      server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(err);
        else resolve();
      });
    });
  }
}

module.exports = { Runner, parseDuration, VERSION };
