#!/usr/bin/env node
'use strict';
// bridge runner for Node.js request listeners: see README.md beside this
// file, and runners/README.md for the contract it follows.
//
//   node runner.js APP.js[:EXPORT]
//
// started by bridge as `--runner 'exec:node /path/to/runner.js app.js'`.

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');
const { Logger, captureStream, writeStderr } = require('./lib/log');
const { Runner, parseDuration } = require('./lib/runner');

const USAGE = 'usage: runner.js APP.js[:EXPORT]  (started by bridge: --runner \'exec:node runner.js app.js\')';

function fatal(message, fields) {
  writeStderr(JSON.stringify({ level: 'error', message, ...fields }) + '\n');
  process.exit(1);
}

// 1. The handshake environment (C3).
const versions = (process.env.PLUGIN_PROTOCOL_VERSIONS || '').split(',').map((s) => s.trim());
if (process.env.BRIDGE_PLUGIN !== 'runner-v1' || !versions.includes('1')) {
  fatal('this is a bridge runner plugin: bridge starts it (BRIDGE_PLUGIN=runner-v1 and PLUGIN_PROTOCOL_VERSIONS with 1 are missing); ' + USAGE);
}
const socketDir = process.env.PLUGIN_UNIX_SOCKET_DIR;
if (!socketDir) fatal('PLUGIN_UNIX_SOCKET_DIR is not set');

const args = process.argv.slice(2);
if (args.length !== 1 || args[0].startsWith('-')) fatal(`expected one argument, the app file; got ${JSON.stringify(args)}. ${USAGE}`);
const appSpec = args[0];

// 2. Keep the app's output off the handshake pipe (C2): what it writes to
// process.stdout or process.stderr becomes log lines on stderr.
let runner = null;
const log = new Logger({
  level: process.env.BRIDGE_LOG_LEVEL || 'info',
  context: () => {
    const ex = runner && runner.als.getStore();
    return ex ? { request_id: ex.id } : null;
  },
});
const outCapture = captureStream(process.stdout, 'stdout', log, 'info');
const errCapture = captureStream(process.stderr, 'stderr', log, 'warn');

// Errors thrown outside the listener's own call (a timer, a stream event)
// belong to the request whose code ran, when there is one.
function uncaught(err, what) {
  const ex = runner && runner.als.getStore();
  if (ex && ex.state === 'app') {
    ex.fail(err);
    return;
  }
  log.error(`${what} outside any request`, {
    error: err instanceof Error ? err.message : String(err),
    traceback: err instanceof Error ? err.stack : undefined,
  });
}
process.on('uncaughtException', (err) => uncaught(err, 'uncaught exception'));
process.on('unhandledRejection', (err) => uncaught(err, 'unhandled promise rejection'));

// 3. Load the app.
function pickListener(mod, name) {
  if (name) {
    const v = mod && mod[name];
    if (typeof v !== 'function') throw new Error(`${appSpec}: export ${JSON.stringify(name)} is not a function`);
    return v;
  }
  if (typeof mod === 'function') return mod;
  if (mod && typeof mod.default === 'function') return mod.default;
  // an http.Server: its 'request' listener
  if (mod && typeof mod.listeners === 'function' && mod.listeners('request').length) {
    const [listener] = mod.listeners('request');
    return listener;
  }
  throw new Error(`${appSpec}: the module exports no request listener: use module.exports = (req, res) => …, module.exports = app (Express), or name an export as FILE:EXPORT`);
}

async function loadApp() {
  let file = appSpec;
  let name = '';
  const colon = appSpec.lastIndexOf(':');
  if (colon > 0 && !fs.existsSync(appSpec)) {
    file = appSpec.slice(0, colon);
    name = appSpec.slice(colon + 1);
  }
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new Error(`app file ${abs} not found (the runner runs in --chdir ${process.cwd()})`);
  let mod;
  try {
    mod = require(abs);
  } catch (err) {
    if (err.code !== 'ERR_REQUIRE_ESM' && err.code !== 'ERR_REQUIRE_ASYNC_MODULE') throw err;
    mod = await import(pathToFileURL(abs).href);
  }
  return pickListener(mod, name);
}

async function main() {
  let app;
  try {
    app = await loadApp();
  } catch (err) {
    outCapture.flush();
    errCapture.flush();
    fatal(`cannot load the app ${appSpec}: ${err && err.message}`, { traceback: err && err.stack });
  }
  const threads = parseInt(process.env.BRIDGE_THREADS, 10) || 1;
  runner = new Runner({
    app,
    appName: appSpec,
    threads,
    slots: parseInt(process.env.BRIDGE_SLOTS, 10) || threads,
    log,
    graceMs: parseDuration(process.env.BRIDGE_GRACE || ''),
    exit: (code) => {
      outCapture.flush();
      errCapture.flush();
      process.exit(code);
    },
  });

  // 4. Listen, then 5. the handshake line, straight to fd 1 (C1).
  const sock = path.join(socketDir, `node-${process.pid}.sock`);
  try {
    await runner.listen(sock);
  } catch (err) {
    fatal(`cannot listen on ${sock}: ${err.message}`, { traceback: err.stack });
  }
  fs.writeSync(1, `1|1|unix|${sock}|grpc\n`);

  process.on('SIGTERM', () => runner.drain('SIGTERM'));
  process.on('SIGINT', () => runner.drain('SIGINT'));
  process.on('SIGUSR1', () => runner.dumpStacks());
  log.debug('runner ready', {
    app: appSpec, threads: runner.threads, slots: runner.slots, socket: sock, node: process.version,
  });
}

main();
