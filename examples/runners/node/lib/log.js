'use strict';
// JSON log lines on stderr (runners/README.md section 8), and the capture of
// what the app writes to process.stdout / process.stderr (C2).

const fs = require('fs');

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };

// The real stderr, written synchronously so that a line is whole and is out
// before the process exits.
function writeStderr(s) {
  try {
    fs.writeSync(2, s);
  } catch (e) {
    if (e.code === 'EAGAIN') {
      try { fs.writeSync(2, s); } catch (_) { /* give up on this line */ }
    }
  }
}

class Logger {
  constructor(opts = {}) {
    this.min = LEVELS[opts.level] || LEVELS.info;
    this.write = opts.write || writeStderr;
    // context() returns fields to add to each line (the request id of the
    // request the code runs for, when known).
    this.context = opts.context || (() => null);
  }

  setLevel(level) {
    if (LEVELS[level]) this.min = LEVELS[level];
  }

  log(level, message, fields) {
    if ((LEVELS[level] || LEVELS.info) < this.min) return;
    const line = { level, message: String(message) };
    const ctx = this.context();
    if (ctx) Object.assign(line, ctx);
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) line[k] = v;
      }
    }
    this.write(JSON.stringify(line) + '\n');
  }

  debug(m, f) { this.log('debug', m, f); }
  info(m, f) { this.log('info', m, f); }
  warn(m, f) { this.log('warn', m, f); }
  error(m, f) { this.log('error', m, f); }
}

// captureStream replaces stream.write (process.stdout or process.stderr) so
// that what the app writes becomes log lines, one per line of text, with
// field stream = name. A partial line is held until its newline or until
// flush().
function captureStream(stream, name, logger, level) {
  let pending = '';
  const emit = (line) => logger.log(level, line, { stream: name });
  const write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    let s;
    if (typeof chunk === 'string') s = chunk;
    else if (chunk instanceof Uint8Array) s = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
    else s = String(chunk);
    pending += s;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      emit(pending.slice(0, nl).replace(/\r$/, ''));
      pending = pending.slice(nl + 1);
    }
    if (pending.length > 64 * 1024) {
      emit(pending);
      pending = '';
    }
    if (cb) process.nextTick(cb);
    return true;
  };
  stream.write = write;
  return {
    flush() {
      if (pending) emit(pending);
      pending = '';
    },
  };
}

module.exports = { Logger, LEVELS, captureStream, writeStderr };
