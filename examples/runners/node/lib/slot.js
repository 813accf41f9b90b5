'use strict';
// One Slot stream (runners/README.md section 4): requests one after
// another, each an Exchange; body frames after the response's end are
// dropped up to the request's `end`.

const grpc = require('@grpc/grpc-js');
const { decodeRequestFrame, encodeResponseFrame } = require('./proto');
const { Exchange } = require('./exchange');

// Response bytes handed to gRPC and not yet taken by HTTP/2: past this, the
// app's writes wait (res.write returns false, 'drain' follows).
const OUTSTANDING_LIMIT = 1024 * 1024;

class Slot {
  constructor(call, runner) {
    this.call = call;
    this.runner = runner;
    this.current = null;
    this.inputDone = true;
    this.responseEnded = true;
    this.paused = false;
    this.outstanding = 0;
    this.drainWaiters = [];
    this.gone = false;
    this.halfClosed = false;
    call.on('data', (buf) => this.onFrame(buf));
    call.on('end', () => this.onHalfClose());
    call.on('cancelled', () => this.onGone('cancelled'));
    call.on('error', (err) => this.onGone(err && err.message ? err.message : 'error'));
    call.on('close', () => this.onGone('closed'));
  }

  onFrame(buf) {
    let fr;
    try {
      fr = decodeRequestFrame(buf);
    } catch (err) {
      this.refuse(grpc.status.INVALID_ARGUMENT, `bad RequestFrame: ${err.message}`);
      return;
    }
    if (fr.head) {
      if (this.current) {
        this.refuse(grpc.status.FAILED_PRECONDITION, 'a head arrived before the previous request ended');
        return;
      }
      if (this.runner.draining) {
        this.refuse(grpc.status.UNAVAILABLE, 'the runner is shutting down');
        return;
      }
      const ex = new Exchange(fr.head, this, this.runner);
      this.current = ex;
      this.inputDone = false;
      this.responseEnded = false;
      if (ex.input(fr.body, fr.end)) this.inputDone = true;
      this.runner.enqueue(ex);
      this.maybeIdle();
      return;
    }
    if (!this.current || this.inputDone) {
      this.runner.log.warn('a body frame without a request: dropped', { bytes: fr.body.length });
      return;
    }
    if (this.current.input(fr.body, fr.end)) {
      this.inputDone = true;
      this.maybeIdle();
    }
  }

  maybeIdle() {
    if (this.current && this.inputDone && this.responseEnded) this.current = null;
    if (!this.current && this.halfClosed) this.close();
  }

  // ---- for the Exchange ------------------------------------------------

  send(frame) {
    if (this.gone) return;
    const buf = encodeResponseFrame(frame);
    this.outstanding += buf.length;
    this.call.write(buf, () => {
      this.outstanding -= buf.length;
      if (this.outstanding < OUTSTANDING_LIMIT) this.wake();
    });
  }

  backedUp() {
    return !this.gone && this.outstanding >= OUTSTANDING_LIMIT;
  }

  onDrain(fn) {
    this.drainWaiters.push(fn);
  }

  wake() {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const fn of w) fn();
  }

  responseDone() {
    this.responseEnded = true;
    this.resumeInput(); // drop what is left of the body, up to its end
    this.maybeIdle();
  }

  pauseInput() {
    if (!this.paused && !this.gone) {
      this.paused = true;
      this.call.pause();
    }
  }

  resumeInput() {
    if (this.paused) {
      this.paused = false;
      this.call.resume();
    }
  }

  // ---- the end of the stream -------------------------------------------

  refuse(code, details) {
    this.runner.log.warn('Slot stream refused', { code, details });
    const ex = this.current;
    this.gone = true;
    this.call.emit('error', { code, details });
    if (ex) ex.cancel();
    this.current = null;
    this.runner.slotGone(this);
  }

  onHalfClose() {
    // bridge closed its side: no more requests on this stream.
    this.halfClosed = true;
    if (this.current && !this.inputDone) this.onGone('half-closed mid-request');
    else this.maybeIdle();
  }

  onGone(why) {
    if (this.gone) return;
    this.gone = true;
    const ex = this.current;
    this.current = null;
    if (ex) {
      this.runner.log.debug('Slot stream gone', { request_id: ex.id, why });
      ex.cancel();
    }
    this.wake();
    this.runner.slotGone(this);
  }

  // close ends the stream with status OK (at shutdown, or after bridge
  // half-closed it).
  close() {
    if (this.gone) return;
    this.gone = true;
    try {
      this.call.end();
    } catch (_) { /* already ended */ }
    this.runner.slotGone(this);
  }
}

module.exports = { Slot, OUTSTANDING_LIMIT };
