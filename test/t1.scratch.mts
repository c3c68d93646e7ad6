import net from 'node:net';
import { peekRecord } from '../src/proxy/mtls/client-hello.js';
import { TestMeshCa } from '../test/support/mesh-certs.js';
import { createTlsContext, NativeTlsSession } from '../src/native/tls-relay.js';
const ca = await TestMeshCa.create();
const s = await ca.leaf('spiffe://cluster.local/ns/a/sa/server');
const c = await ca.leaf('spiffe://cluster.local/ns/a/sa/client');
const alpn = ['istio-peer-exchange', 'istio'];
const sctx = createTlsContext({ server: true, ...s, alpn });
const cctx = createTlsContext({ server: false, ...c, alpn });
const srv = net.createServer({ pauseOnConnect: true }, async (sock) => {
  const hello = await peekRecord(sock, 1000); console.log('peeked', hello.length);
  const sess = new NativeTlsSession(sctx, sock, { server: true, handshakeTimeoutMs: 5000 });
  console.log('server hs', await sess.handshake);
  const app = net.connect(appPort, '127.0.0.1');
  await new Promise((r) => app.once('connect', r));
  sess.attach(app, 0);
  console.log('server done', await sess.done);
});
const appSrv = net.createServer((a) => { let n = 0; a.on('data', (d) => { n += d.length; }); a.on('end', () => a.end('got ' + n + '\n')); });
await new Promise<void>((r) => appSrv.listen(0, '127.0.0.1', () => r()));
const appPort = (appSrv.address() as net.AddressInfo).port;
await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
const up = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
await new Promise((r) => up.once('connect', r));
const cs = new NativeTlsSession(cctx, up, { server: false, handshakeTimeoutMs: 5000 });
console.log('client hs', await cs.handshake);
// plaintext side: a socketpair-ish via loopback
const plainSrv = net.createServer({ pauseOnConnect: true }, (p) => { cs.attach(p, 0); });
await new Promise<void>((r) => plainSrv.listen(0, '127.0.0.1', () => r()));
const user = net.connect((plainSrv.address() as net.AddressInfo).port, '127.0.0.1');
user.on('data', (d) => { console.log('user got', JSON.stringify(d.toString())); });
user.end(Buffer.alloc(256 * 1024, 'x'));

user.on('end', () => console.log('user end'));
console.log('client done', await cs.done);
srv.close(); appSrv.close(); plainSrv.close();
