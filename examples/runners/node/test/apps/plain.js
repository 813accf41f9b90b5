'use strict';
// A plain request listener for the tests: what the runner gives req and
// res, and the edge cases of the response path.

const fs = require('fs');
const path = require('path');
const { pipeline } = require('stream');

const FILE = path.join(__dirname, 'static.txt');

module.exports = (req, res) => {
  const url = new URL(req.url, 'http://x');
  switch (url.pathname) {
    case '/info': {
      const body = JSON.stringify({
        method: req.method, url: req.url, httpVersion: req.httpVersion,
        headers: req.headers, rawHeaders: req.rawHeaders,
        remoteAddress: req.socket.remoteAddress, remotePort: req.socket.remotePort,
        encrypted: Boolean(req.connection.encrypted), requestId: req.bridge.requestId,
        isIncomingMessage: req instanceof require('http').IncomingMessage,
      });
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Set-Cookie', ['a=1', 'b=2']);
      res.end(body);
      return;
    }
    case '/upload': {
      let n = 0;
      const crypto = require('crypto');
      const h = crypto.createHash('sha256');
      req.on('data', (c) => { n += c.length; h.update(c); });
      req.on('end', () => res.end(`${n} ${h.digest('hex')}`));
      return;
    }
    case '/big':
      res.end(Buffer.alloc(2.5 * 1024 * 1024, 'x'));
      return;
    case '/async-throw':
      res.writeHead(200);
      setTimeout(() => { throw new Error('thrown from a timer'); }, 5);
      return;
    case '/reject':
      return Promise.reject(new Error('rejected listener'));
    case '/destroy':
      res.write('some');
      setTimeout(() => res.destroy(new Error('app gave up')), 5);
      return;
    case '/short':
      res.writeHead(200, { 'Content-Length': '10' });
      res.write('12345');
      res.end();
      return;
    case '/hints':
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('after hints');
      return;
    case '/te':
      res.writeHead(200, { 'Transfer-Encoding': 'chunked', Connection: 'keep-alive' });
      res.write('one ');
      res.end('two');
      return;
    case '/file-range':
      fs.createReadStream(FILE, { start: 7, end: 10 }).pipe(res);
      return;
    case '/file-pipeline':
      res.setHeader('Content-Type', 'text/plain');
      pipeline(fs.createReadStream(FILE), res, () => {});
      return;
    case '/file-missing':
      pipeline(fs.createReadStream(FILE + '.missing'), res, () => {});
      return;
    case '/head':
      res.setHeader('Content-Length', '5');
      res.end(req.method === 'HEAD' ? undefined : 'hello');
      return;
    case '/status':
      res.statusCode = 418;
      res.statusMessage = 'Short And Stout';
      res.end();
      return;
    case '/retire':
      req.bridge.retire();
      res.end('bye');
      return;
    default:
      res.statusCode = 404;
      res.end('not found');
  }
};
