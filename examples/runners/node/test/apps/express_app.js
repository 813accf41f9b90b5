'use strict';
// A real Express app for the tests (test/runner.test.js and e2e/node_test.go):
// JSON, a JSON body through express.json(), a streamed response, a file
// through res.sendFile, an error through Express's own handler, and 404.

const path = require('path');
const express = require('express');

const app = express();
app.use(express.json());

app.get('/api/hello', (req, res) => {
  res.json({ hello: req.query.name || 'world', requestId: req.bridge.requestId, protocol: req.protocol, ip: req.ip });
});

app.post('/api/items', (req, res) => {
  if (!req.body || typeof req.body.name !== 'string') {
    res.status(400).json({ error: 'name is required' });
    return;
  }
  res.status(201).json({ created: req.body.name, tags: req.body.tags || [], contentType: req.get('content-type') });
});

app.get('/stream', (req, res) => {
  const n = Number(req.query.n || 3);
  const ms = Number(req.query.ms || 100);
  res.set({ 'Content-Type': 'text/plain', 'X-Accel-Buffering': 'no' });
  let i = 0;
  const tick = () => {
    i++;
    res.write(`tick ${i}\n`);
    if (i >= n) return res.end();
    timer = setTimeout(tick, ms);
  };
  let timer = null;
  res.on('close', () => clearTimeout(timer));
  tick();
});

app.get('/static', (req, res) => {
  res.sendFile(path.join(__dirname, 'static.txt'));
});

app.get('/boom', () => {
  throw new Error('express route failed');
});

app.use((req, res) => {
  res.status(404).type('text').send(`no route for ${req.method} ${req.path}`);
});

module.exports = app;
