// Sockets across netns on the real kernel: SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST
// after an nft redirect, sockets created inside a pod netns, SO_PEERCRED.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { closeSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { nftRun, originalDst, peerCred, socketFd, socketInNetns, type SocketAddress, type NativeError } from '../../src/native/addon.js';

const skip = skipUnlessRoot();
const execFileAsync = promisify(execFile);
const cleanups: Array<() => void> = [];
after(() => { for (const c of cleanups.reverse()) { try { c(); } catch { /* best effort */ } } });

/**
 * A netns with an interface carrying 10.77.0.1/24 and fd77::1/64, so those
 * subnets route (a veth pair with both ends inside: this kernel has no dummy).
 */
function podNetns(): Netns {
  const ns = Netns.create('wn');
  cleanups.push(() => ns.destroy());
  ns.ip('link', 'add', 'wnd0', 'type', 'veth', 'peer', 'name', 'wnd1');
  ns.ip('addr', 'add', '10.77.0.1/24', 'dev', 'wnd0');
  ns.ip('-6', 'addr', 'add', 'fd77::1/64', 'dev', 'wnd0', 'nodad');
  ns.ip('link', 'set', 'wnd1', 'up');
  ns.ip('link', 'set', 'wnd0', 'up');
  return ns;
}

async function serverOnFd(fd: number, onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer(onConnection);
  server.listen({ fd });
  await once(server, 'listening');
  cleanups.push(() => server.close());
  return server;
}

/** Accept one connection and report its original destination. */
function nextOriginalDst(server: net.Server): Promise<SocketAddress> {
  return new Promise((resolve, reject) => {
    server.once('connection', (s) => {
      try { resolve(originalDst(socketFd(s))); } catch (e) { reject(e); } finally { s.destroy(); }
    });
  });
}

async function connectInNetns(ns: Netns, family: 4 | 6, address: string, port: number): Promise<net.Socket> {
  const fd = await socketInNetns(ns.path, { kind: 'tcp-connect', family, address, port, timeoutMs: 3000 });
  const sock = new net.Socket({ fd, readable: true, writable: true });
  cleanups.push(() => sock.destroy());
  return sock;
}

test('originalDst reports the dialled IPv4 and IPv6 address after an nft redirect', { skip }, async () => {
  const ns = podNetns();
  await nftRun(ns.path, [
    'table inet wn_redirect {',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    ip daddr 10.77.0.0/24 tcp dport 8080 redirect to :15001',
    '    ip6 daddr fd77::/64 tcp dport 8080 redirect to :15001',
    '    ip daddr 10.77.0.0/24 tcp dport 9090 redirect to :15002',
    '  }',
    '}',
  ].join('\n'));
  // A dual-stack listener (IPv4 arrives v4-mapped) and an IPv4-only one.
  const dual = await serverOnFd(await socketInNetns(ns.path, { kind: 'tcp-listen', family: 6, address: '::', port: 15001 }), () => {});
  const v4only = await serverOnFd(await socketInNetns(ns.path, { kind: 'tcp-listen', family: 4, address: '0.0.0.0', port: 15002 }), () => {});

  const cases: Array<[net.Server, 4 | 6, string, number]> = [
    [dual, 4, '10.77.0.5', 8080],
    [dual, 6, 'fd77::5', 8080],
    [dual, 6, 'fd77::1234', 8080],
    [v4only, 4, '10.77.0.9', 9090],
  ];
  for (const [server, family, address, port] of cases) {
    const got = nextOriginalDst(server);
    await connectInNetns(ns, family, address, port);
    assert.deepEqual(await got, { family, address, port }, `dialled ${address}:${port}`);
  }
});

test('originalDst on a socket that was not redirected is a clear error', { skip }, async () => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => server.close());
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  cleanups.push(() => client.destroy());
  const [s] = (await accepted) as [net.Socket];
  try {
    assert.throws(() => originalDst(socketFd(s)), (e: NativeError) => /^getsockopt SO_ORIGINAL_DST fd \d+: /.test(e.message) && e.code === 'ENOENT');
  } finally { s.destroy(); }
  assert.throws(() => originalDst(-1), /fd must be a non-negative integer/);
});

test('a listening socket made inside a pod netns accepts a connection from inside that netns only', { skip }, async () => {
  const ns = podNetns();
  // 10.77.0.1 exists only in the pod netns: binding it proves where the socket lives.
  const fd = await socketInNetns(ns.path, { kind: 'tcp-listen', family: 4, address: '10.77.0.1', port: 0 });
  const server = await serverOnFd(fd, (s) => { s.end('hello from the pod netns listener\n'); });
  const port = (server.address() as net.AddressInfo).port;
  assert.equal((server.address() as net.AddressInfo).address, '10.77.0.1');
  // Asynchronously: the listener lives on this event loop.
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns.name, 'socat', '-T', '3', '-u', `TCP:10.77.0.1:${port}`, '-']);
  assert.equal(stdout, 'hello from the pod netns listener\n');

  await assert.rejects(() => socketInNetns(null, { kind: 'tcp-listen', family: 4, address: '10.77.0.1', port: 0 }),
    (e: NativeError) => e.code === 'EADDRNOTAVAIL' && /^bind 10\.77\.0\.1:0: Cannot assign requested address$/.test(e.message));
});

test('a connecting socket made inside a pod netns reaches a listener inside it (IPv4 and IPv6)', { skip }, async () => {
  const ns = podNetns();
  for (const [family, address, listenAddr] of [[4, '10.77.0.1', '10.77.0.1'], [6, 'fd77::1', '[fd77::1]']] as const) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const echo = ns.spawn('socat', [family === 4 ? `TCP4-LISTEN:${port},bind=${listenAddr},reuseaddr` : `TCP6-LISTEN:${port},bind=${listenAddr},reuseaddr`, 'EXEC:cat']);
    let sock: net.Socket | undefined;
    for (let i = 0; i < 50 && !sock; i++) {
      try { sock = await connectInNetns(ns, family, address, port); } catch (e) {
        if ((e as NativeError).code !== 'ECONNREFUSED') throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.ok(sock, `socat never listened on ${address}:${port}`);
    sock.write(`ping over IPv${family}\n`);
    const [data] = await once(sock, 'data');
    assert.equal(String(data), `ping over IPv${family}\n`);
    sock.destroy();
    echo.kill('SIGKILL');
  }
  await assert.rejects(() => socketInNetns(ns.path, { kind: 'tcp-connect', family: 4, address: '10.77.0.1', port: 1 }),
    (e: NativeError) => e.code === 'ECONNREFUSED' && e.message === 'connect 10.77.0.1:1: Connection refused');
  await assert.rejects(() => socketInNetns(ns.path, { kind: 'tcp-connect', family: 4, address: '10.77.0.300', port: 80 }),
    /address: not an IPv4 address: "10\.77\.0\.300"/);
  await assert.rejects(() => socketInNetns(ns.path, { kind: 'tcp-connect', family: 5 as 4, address: '10.77.0.1', port: 80 }),
    /options\.family must be 4 or 6/);
});

test('a UDP socket bound inside a pod netns shows up in that netns', { skip }, async () => {
  const ns = podNetns();
  const fd = await socketInNetns(ns.path, { kind: 'udp-bind', family: 6, address: 'fd77::1', port: 15053 });
  try {
    assert.match(ns.exec('ss', ['-Hunl']), /\[fd77::1\]:15053/);
  } finally {
    // node:dgram cannot adopt an fd; close it directly.
    closeSync(fd);
  }
  assert.doesNotMatch(ns.exec('ss', ['-Hunl']), /:15053/);
});

test('peerCred reports the pid, uid and gid of a unix-socket client', { skip }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wn-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const sockPath = path.join(dir, 'ctl.sock');
  const server = net.createServer();
  server.listen(sockPath);
  await once(server, 'listening');
  cleanups.push(() => server.close());
  const accepted = once(server, 'connection');
  const client = spawn('socat', ['-', `UNIX-CONNECT:${sockPath}`], { stdio: ['pipe', 'ignore', 'ignore'] });
  cleanups.push(() => client.kill('SIGKILL'));
  const [s] = (await accepted) as [net.Socket];
  try {
    assert.deepEqual(peerCred(socketFd(s)), { pid: client.pid, uid: process.getuid!(), gid: process.getgid!() });
  } finally { s.destroy(); }
});

test('socket options: mark is seen by nftables; transparent and freebind allow binding an address the netns does not have', { skip }, async () => {
  const ns = podNetns();
  await nftRun(ns.path, 'table inet wn_mark { chain out { type filter hook output priority 0; policy accept; meta mark 0x2a counter; }; }');
  const server = await serverOnFd(await socketInNetns(ns.path, { kind: 'tcp-listen', family: 4, address: '10.77.0.1', port: 0 }), (s) => s.destroy());
  const port = (server.address() as net.AddressInfo).port;
  const before = await nftRun(ns.path, 'list chain inet wn_mark out');
  assert.match(before, /meta mark 0x0000002a counter packets 0 bytes 0/);
  const fd = await socketInNetns(ns.path, { kind: 'tcp-connect', family: 4, address: '10.77.0.1', port, mark: 42 });
  closeSync(fd);
  assert.match(await nftRun(ns.path, 'list chain inet wn_mark out'), /meta mark 0x0000002a counter packets [1-9]/);

  const foreign = { kind: 'tcp-listen' as const, family: 4 as const, address: '10.88.0.1', port: 0 };
  await assert.rejects(() => socketInNetns(ns.path, foreign), (e: NativeError) => e.code === 'EADDRNOTAVAIL');
  for (const opt of [{ transparent: true }, { freebind: true }]) {
    const bound = await socketInNetns(ns.path, { ...foreign, ...opt });
    try {
      assert.match(ns.exec('ss', ['-Htln']), /10\.88\.0\.1:\d+/, JSON.stringify(opt));
    } finally { closeSync(bound); }
  }
  await assert.rejects(() => socketInNetns(ns.path, { ...foreign, mark: -1 }), /options\.mark must be an integer in \[0, 4294967295\]/);
});
