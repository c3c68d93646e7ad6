// DestinationRule connectionPool.http.maxRequestsPerConnection on real
// loopback connections: a connection is retired after that many requests,
// over HTTP/1.1 and HTTP/2 alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { UpstreamPools } from '../../src/proxy/http/upstream.js';

async function exchange(pools: UpstreamPools, proto: 'h1' | 'h2', port: number): Promise<number> {
  const ex = await pools.open(proto, { ip: '127.0.0.1', port }, { method: 'GET', path: '/', authority: 'x', headers: {} }, {});
  ex.sink.end();
  const res = await ex.response;
  res.body.resume();
  await new Promise((r) => res.body.once('end', r));
  return res.status;
}

for (const proto of ['h1', 'h2'] as const) {
  test(`maxRequestsPerConnection 2 (${proto}): 6 requests use 3 connections; unlimited uses 1`, async () => {
    let conns = 0;
    const handler = (_req: unknown, res: http.ServerResponse | http2.Http2ServerResponse) => res.end('ok');
    const server = proto === 'h1' ? http.createServer({ keepAliveTimeout: 10_000 }, handler) : http2.createServer(handler);
    server.on('connection', () => conns++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const limited = new UpstreamPools(5000, 60_000, 2);
      for (let i = 0; i < 6; i++) { assert.equal(await exchange(limited, proto, port), 200); await new Promise((r) => setTimeout(r, 20)); }
      assert.equal(conns, 3);
      limited.close();
      conns = 0;
      const open = new UpstreamPools(5000, 60_000);
      for (let i = 0; i < 6; i++) assert.equal(await exchange(open, proto, port), 200);
      assert.equal(conns, 1);
      open.close();
    } finally {
      (server as http.Server).closeAllConnections?.();
      server.close();
    }
  });
}
