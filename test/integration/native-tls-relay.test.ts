// The native mesh TLS relay (native/src/tls_relay.h) on real loopback TCP,
// in miniature what two proxies do: a client hop (accepts plaintext,
// connects, runs the client handshake natively, relays) and a server hop
// (peeks the ClientHello as the inbound gate does, runs the server handshake
// natively, connects the app, relays), with hostile peers on either side.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { createTlsContext, NativeTlsSession, tlsRelayAvailable, tlsRelayStats, type TlsContext, type TlsDone } from '../../src/native/tls-relay.js';
import { NativeMeshTls } from '../../src/proxy/mtls/native-tls.js';
import type { WorkloadIdentity } from '../../src/mtls/workload-identity.js';
import { MESH_ALPN_TCP, peekRecord } from '../../src/proxy/mtls/client-hello.js';
import { TestMeshCa, type Leaf } from '../support/mesh-certs.js';
import { MiB, pumpHarness } from '../support/splice-relay.js';
import { Registry } from 'prom-client';

const skip = tlsRelayAvailable() ? false : 'native addon without the TLS relay: run npm run build:native';
const { cleanups, serve, echoServer, connect, collect, nextError, readExactly, listen } = pumpHarness();
after(() => { for (const c of cleanups.splice(0).reverse()) { try { c(); } catch { /* best effort */ } } });

const SERVER_ID = 'spiffe://cluster.local/ns/a/sa/server';
const CLIENT_ID = 'spiffe://cluster.local/ns/a/sa/client';
let ca: TestMeshCa;
let serverLeaf: Leaf;
let clientLeaf: Leaf;
const ctx = (server: boolean, l: Leaf): TlsContext => createTlsContext({ server, ...l, alpn: MESH_ALPN_TCP });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The inbound side: peek, native server handshake, then the app; every session's end is kept. */
async function serverHop(appPort: number, leaf = serverLeaf) {
  const c = ctx(true, leaf);
  const done: Promise<TlsDone>[] = [];
  const peers: string[][] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    down.on('error', () => {});
    void (async () => {
      await peekRecord(down, 2000);
      const s = new NativeTlsSession(c, down, { server: true, handshakeTimeoutMs: 2000 });
      done.push(s.done);
      const h = await s.handshake.catch(() => undefined);
      if (!h) return;
      peers.push(h.peerUris);
      const app = net.connect({ host: '127.0.0.1', port: appPort, allowHalfOpen: true });
      app.on('error', () => {});
      await once(app, 'connect');
      // The client may have left meanwhile (the session ended): as the proxy's relayNative does, drop the app side.
      try { s.attach(app, 0); } catch { app.destroy(); }
    })();
  });
  return { port: await listen(server), done, peers };
}

/** The outbound side: accepts plaintext, dials `upPort`, native client handshake, relays. */
async function clientHop(upPort: number, leaf = clientLeaf) {
  const c = ctx(false, leaf);
  const done: Promise<TlsDone>[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
    down.on('error', () => {});
    const up = net.connect({ host: '127.0.0.1', port: upPort, allowHalfOpen: true });
    up.on('error', () => down.resetAndDestroy());
    up.once('connect', () => {
      const s = new NativeTlsSession(c, up, { server: false, handshakeTimeoutMs: 2000 });
      done.push(s.done);
      s.handshake.then(() => s.attach(down, 0), () => down.resetAndDestroy());
    });
  });
  return { port: await listen(server), done };
}

async function hops(appPort: number) {
  const sh = await serverHop(appPort);
  const ch = await clientHop(sh.port);
  return { sh, ch };
}

test('setup: a mesh root and two workload certificates', { skip }, async () => {
  ca = await TestMeshCa.create();
  serverLeaf = await ca.leaf(SERVER_ID);
  clientLeaf = await ca.leaf(CLIENT_ID);
});

test('large transfer both ways at once through two native hops: 48 MiB up, 48 MiB echoed back, sha256 equal; clean close; peers seen', { skip }, async () => {
  const echo = await echoServer();
  const { sh, ch } = await hops(echo.port);
  const client = await connect(ch.port);
  const bulk = randomBytes(48 * MiB);
  const back = collect(client);
  client.end(bulk);
  const got = await back;
  assert.equal(got.length, bulk.length);
  assert.equal(sha(got), sha(bulk));
  const [cd, sd] = await Promise.all([ch.done[0], sh.done[0]]);
  assert.deepEqual({ reason: cd.reason, up: cd.plainToTls, down: cd.tlsToPlain }, { reason: 'closed', up: bulk.length, down: bulk.length });
  assert.deepEqual({ reason: sd.reason, up: sd.tlsToPlain, down: sd.plainToTls }, { reason: 'closed', up: bulk.length, down: bulk.length });
  assert.deepEqual(sh.peers[0], [CLIENT_ID]);
});

test('half-close, client first: the app sees EOF after all bytes, answers, and its answer and EOF reach the client', { skip }, async () => {
  const app = await serve((s) => { const chunks: Buffer[] = []; s.on('data', (d: Buffer) => chunks.push(d)); s.on('end', () => s.end(`got ${sha(Buffer.concat(chunks))}`)); });
  const { ch } = await hops(app.port);
  const client = await connect(ch.port);
  const payload = randomBytes(3 * MiB + 7);
  const answer = collect(client);
  client.end(payload);
  assert.equal((await answer).toString(), `got ${sha(payload)}`);
  assert.equal((await ch.done[0]).reason, 'closed');
});

test('half-close, server first: the app ends its side at once, the client gets EOF and can still send; the app receives it', { skip }, async () => {
  let late!: (b: string) => void;
  const lateBytes = new Promise<string>((r) => { late = r; });
  const app = await serve((s) => {
    s.end('bye');
    let got = '';
    s.on('data', (d: Buffer) => { got += d.toString(); });
    s.on('end', () => late(got));
  });
  const { ch } = await hops(app.port);
  const client = await connect(ch.port);
  assert.equal((await collect(client)).toString(), 'bye');
  client.end('still talking after your FIN');
  assert.equal(await lateBytes, 'still talking after your FIN');
  assert.equal((await ch.done[0]).reason, 'closed');
});

test('the app resets mid-stream: the client gets a reset (not a clean end), both hops report it', { skip }, async () => {
  const app = await serve((s) => { let n = 0; s.on('data', (d: Buffer) => { n += d.length; if (n > 2 * MiB) s.resetAndDestroy(); }); });
  const { sh, ch } = await hops(app.port);
  const client = await connect(ch.port);
  const err = nextError(client);
  const chunk = randomBytes(256 * 1024);
  const pump = setInterval(() => { if (!client.destroyed) client.write(chunk); }, 5);
  const e = await err;
  clearInterval(pump);
  assert.match(String(e.code), /ECONNRESET|EPIPE/);
  assert.equal((await sh.done[0]).reason, 'reset-by-plain');
  assert.match((await ch.done[0]).reason, /reset-by-tls|error/);
});

test('the client resets mid-stream: the app gets a reset', { skip }, async () => {
  let appErr!: (e: NodeJS.ErrnoException) => void;
  const seen = new Promise<NodeJS.ErrnoException>((r) => { appErr = r; });
  const app = await serve((s) => { s.once('error', appErr); s.resume(); });
  const { ch } = await hops(app.port);
  const client = await connect(ch.port);
  client.write(randomBytes(MiB));
  await new Promise((r) => setTimeout(r, 100));
  client.resetAndDestroy();
  assert.equal((await seen).code, 'ECONNRESET');
  assert.equal((await ch.done[0]).reason, 'reset-by-plain');
});

test('garbage after a real ClientHello: the handshake fails, nothing reaches the app, the relay keeps serving', { skip }, async () => {
  let appConnections = 0;
  const app = await serve((s) => { appConnections++; s.pipe(s); });
  const sh = await serverHop(app.port);
  // A genuine ClientHello (node:tls with the mesh ALPN), caught on its way, then noise.
  let hello!: (b: Buffer) => void;
  const caught = new Promise<Buffer>((r) => { hello = r; });
  const catcher = await serve((s) => s.once('data', (d: Buffer) => { hello(d); s.destroy(); }));
  tls.connect({ host: '127.0.0.1', port: catcher.port, ALPNProtocols: MESH_ALPN_TCP, rejectUnauthorized: false }).on('error', () => {});
  const raw = await connect(sh.port);
  raw.write(Buffer.concat([await caught, Buffer.from([0x17, 0x03, 0x03, 0x00, 0x40]), randomBytes(64), randomBytes(4096)]));
  raw.on('error', () => {});
  raw.resume();
  await Promise.race([once(raw, 'end'), once(raw, 'close')]);
  const d = await sh.done[0];
  assert.equal(d.reason, 'handshake-failed');
  assert.equal(appConnections, 0);
  // Still serving: a real client through a client hop works afterwards.
  const ch = await clientHop(sh.port);
  const client = await connect(ch.port);
  client.write('after the noise');
  assert.equal((await readExactly(client, 15)).toString(), 'after the noise');
  client.destroy();
});

test('identity: a server with the wrong SPIFFE ID is refused before any byte; a server from another CA fails the handshake', { skip }, async () => {
  let appBytes = 0;
  const app = await serve((s) => { s.on('data', (d: Buffer) => { appBytes += d.length; }); });
  const sh = await serverHop(app.port);
  const mesh = new NativeMeshTls('cluster.local', 2000, new Registry());
  const wi = { credentials: () => ({ cert: clientLeaf.cert, key: clientLeaf.key, ca: clientLeaf.roots, serial: 'c1', notAfter: new Date() }) } as unknown as WorkloadIdentity;
  const dial = async () => { const up = net.connect({ host: '127.0.0.1', port: sh.port }); await once(up, 'connect'); return up; };
  await assert.rejects(mesh.connect(wi, await dial(), ['spiffe://cluster.local/ns/a/sa/someone-else']), /server is spiffe:\/\/cluster\.local\/ns\/a\/sa\/server, expected spiffe:\/\/cluster\.local\/ns\/a\/sa\/someone-else/);
  const ok = await mesh.connect(wi, await dial(), [SERVER_ID]);
  assert.equal(ok.peer, SERVER_ID);
  ok.destroy();
  // A server whose certificate another root signed.
  const other = await TestMeshCa.create();
  const rogue = await serverHop(app.port, { ...(await other.leaf(SERVER_ID)), roots: ca.rootsPem });
  const up = net.connect({ host: '127.0.0.1', port: rogue.port });
  await once(up, 'connect');
  await assert.rejects(mesh.connect(wi, up, [SERVER_ID]), /certificate verify failed|handshake/);
  // The refused client session was never attached: it reset the connection without relaying a byte.
  const refused = await sh.done[0];
  assert.deepEqual({ reason: refused.reason, bytes: refused.tlsToPlain }, { reason: 'reset-by-tls', bytes: 0 });
  assert.equal((await rogue.done[0]).reason, 'handshake-failed');
  assert.equal(appBytes, 0);
});

test('inbound identity: a client of another trust domain is refused by accept() (the handshake itself verifies)', { skip }, async () => {
  const mesh = new NativeMeshTls('cluster.local', 2000, new Registry());
  const wi = { credentials: () => ({ cert: serverLeaf.cert, key: serverLeaf.key, ca: serverLeaf.roots, serial: 's1', notAfter: new Date() }) } as unknown as WorkloadIdentity;
  const results: Array<string> = [];
  let settled!: () => void;
  const both = new Promise<void>((r) => { settled = r; });
  const server = net.createServer({ pauseOnConnect: true }, (down) => {
    down.on('error', () => {});
    void peekRecord(down, 2000).then(() => mesh.accept(wi, down)).then((t) => { results.push(`ok ${t.peer}`); t.destroy(); }, (e: Error) => { results.push(`refused: ${e.message}`); })
      .finally(() => { if (results.length === 2) settled(); });
  });
  const port = await listen(server);
  for (const leaf of [await ca.leaf('spiffe://evil.example/ns/a/sa/client'), clientLeaf]) {
    const up = net.connect({ host: '127.0.0.1', port });
    up.on('error', () => {});
    await once(up, 'connect');
    const s = new NativeTlsSession(ctx(false, leaf), up, { server: false, handshakeTimeoutMs: 2000 });
    await s.handshake.catch(() => undefined);
    s.abort(false);
    await s.done;
  }
  await both;
  assert.deepEqual(results.sort(), [`ok ${CLIENT_ID}`, 'refused: peer trust domain evil.example is not cluster.local']);
});

test('interop with node:tls: a node:tls mesh client through a native server hop, and a native client hop to a node:tls server', { skip }, async () => {
  const echo = await echoServer();
  const sh = await serverHop(echo.port);
  const t = tls.connect({ host: '127.0.0.1', port: sh.port, cert: clientLeaf.cert, key: clientLeaf.key, ca: clientLeaf.roots, ALPNProtocols: MESH_ALPN_TCP, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
  await once(t, 'secureConnect');
  t.write('node client');
  assert.equal((await readExactly(t as unknown as net.Socket, 11)).toString(), 'node client');
  t.destroy();
  const nodeServer = tls.createServer({ cert: serverLeaf.cert, key: serverLeaf.key, ca: serverLeaf.roots, requestCert: true, rejectUnauthorized: true, ALPNProtocols: MESH_ALPN_TCP }, (s) => s.pipe(s));
  const port = await listen(nodeServer as unknown as net.Server);
  const ch = await clientHop(port);
  const client = await connect(ch.port);
  const bulk = randomBytes(4 * MiB);
  const back = collect(client);
  client.end(bulk);
  assert.equal(sha(await back), sha(bulk));
  const st = tlsRelayStats()!;
  assert.ok(st.handshakes > 0 && st.openssl.startsWith('OpenSSL 3'), JSON.stringify(st));
});
