// The inbound side tells mesh mTLS from an app's own TLS by the ClientHello's
// ALPN: read from real ClientHellos (node:tls as a client, as openssl would send them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { alpnFromClientHello, isMeshAlpn } from '../../src/proxy/mtls/client-hello.js';
import { sniFrom } from '../../src/proxy/protocol/sniff.js';

async function clientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  let resolve!: (b: Buffer) => void;
  const got = new Promise<Buffer>((r) => { resolve = r; });
  const srv = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) { resolve(buf); s.destroy(); }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const c = tls.connect({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false, ...opts });
  c.on('error', () => undefined);
  const b = await got;
  c.destroy();
  srv.close();
  return b;
}

test('ALPN from real ClientHellos: mesh TCP, mesh HTTP, app TLS, none; truncated records are undecided', async () => {
  const tcp = await clientHello({ ALPNProtocols: ['istio-peer-exchange', 'istio'], servername: 'outbound_.8080_._.echo.a.svc.cluster.local' });
  assert.deepEqual(alpnFromClientHello(tcp), ['istio-peer-exchange', 'istio']);
  assert.equal(isMeshAlpn(alpnFromClientHello(tcp)!), true);
  assert.equal(sniFrom(tcp.subarray(5)), 'outbound_.8080_._.echo.a.svc.cluster.local', 'SNI still read through the shared extension walk');
  assert.deepEqual(alpnFromClientHello(await clientHello({ ALPNProtocols: ['istio-h2'] })), ['istio-h2']);
  const app = await clientHello({ ALPNProtocols: ['h2', 'http/1.1'], servername: 'shop.example' });
  assert.deepEqual(alpnFromClientHello(app), ['h2', 'http/1.1']);
  assert.equal(isMeshAlpn(alpnFromClientHello(app)!), false);
  assert.deepEqual(alpnFromClientHello(await clientHello({})), []);
  assert.equal(alpnFromClientHello(tcp.subarray(0, tcp.length - 10)), undefined);
  assert.equal(alpnFromClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), undefined);
});
