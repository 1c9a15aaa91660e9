// Socket.IO 4 comparison server for the Pulsewire benchmarks.
//
// - listens on 127.0.0.1:$PORT (BIND overrides the address), WebSocket transport only;
// - a client emits `subscribe` with a channel name and is joined to that room
//   (acknowledged when the emit carries an ack id);
// - `POST /publish` with {"channel": "...", "data": <json>} does
//   io.to(channel).emit('message', data) once per request and answers 200 JSON;
// - `GET /health` answers "ok".
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 3000);
const bind = process.env.BIND || '127.0.0.1';

let published = 0;

const httpServer = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  if (req.url === '/publish') {
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid JSON' }));
        return;
      }
      if (!body || typeof body.channel !== 'string' || body.data === undefined) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'need channel and data' }));
        return;
      }
      io.to(body.channel).emit('message', body.data);
      published += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ offset: published }));
    });
    return;
  }
  // Anything else that is not for engine.io (it handles /socket.io/ itself).
  if (!req.url.startsWith('/socket.io/')) {
    res.writeHead(404).end();
  }
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  // Defaults spelled out: engine.io pings every 25 s and waits 20 s for "3".
  pingInterval: 25000,
  pingTimeout: 20000,
  perMessageDeflate: false,
  httpCompression: false,
  cors: { origin: '*' },
});

io.on('connection', (socket) => {
  // The load generator emits `421["subscribe","bench"]` (with an ack id) and
  // waits for the `431[true]` ack, so it knows the join has happened.
  socket.on('subscribe', (channel, ack) => {
    const ok = typeof channel === 'string' && channel.length > 0;
    if (ok) {
      socket.join(channel);
    }
    if (typeof ack === 'function') {
      ack(ok);
    }
  });
});

// Keep idle publish connections open longer than the generator's pool does
// (Node's default is 5 s), so no request races a server-side close.
httpServer.keepAliveTimeout = 30000;
httpServer.headersTimeout = 31000;

httpServer.listen(port, bind, () => {
  console.log(`socket.io bench server listening on ${bind}:${port}`);
});

function shutdown() {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
