'use strict';
// A listener for the G items of docs/conformance.md (test/shared_rules.test.js).

let previous = null;

module.exports = (req, res) => {
  const url = new URL(req.url, 'http://x');
  const q = url.searchParams;
  switch (url.pathname) {
    case '/status':
      res.statusCode = Number(q.get('s'));
      if (q.has('m')) res.statusMessage = q.get('m');
      res.end();
      return;
    case '/header':
      res.setHeader(q.get('n'), q.get('v'));
      res.end('x');
      return;
    case '/content-length':
      res.setHeader('Content-Length', q.getAll('v'));
      res.end(q.get('b') || '');
      return;
    case '/overrun':
      res.setHeader('Content-Length', '3');
      res.write('ab');
      setTimeout(() => { res.write('cdef'); res.end('gh'); }, 10);
      return;
    case '/no-body':
      res.statusCode = Number(q.get('s'));
      res.setHeader('Content-Type', 'text/plain');
      res.setHeader('Content-Length', '5');
      res.end('hello');
      return;
    case '/bytes':
      res.setHeader('X-Latin1', 'caf\xe9');
      res.write(Buffer.from([0x61, 0x0d, 0x0a, 0x62, 0x0a, 0x00, 0xff]));
      res.end(Buffer.from('\r\n', 'latin1'));
      return;
    case '/leak': {
      const seen = {
        sameReq: req === (previous && previous.req),
        sameRes: res === (previous && previous.res),
        mark: req.mark || null,
        bridgeEnvKeys: Object.keys(req.bridge.env),
        headerNames: Object.keys(req.headers),
      };
      req.mark = 'from an earlier request';
      req.bridge.env.MUTATED = 'yes';
      previous = { req, res };
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(seen));
      return;
    }
    default:
      res.statusCode = 404;
      res.end();
  }
};
