// PodListeners on the real kernel: the pod socket is bound inside the pod's
// netns only (unreachable from the host and from other netns), a name some
// pod process squatted first is reported (EADDRINUSE) instead of silently
// shared, the agent's own netns is refused (a hostNetwork pod would share
// it), and close() gives back every fd.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { pino } from 'pino';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { PodListeners, abstractAddresses } from '../../src/controlplane/pod-listeners.js';
import { encode } from '../../src/controlplane/protocol.js';

const skip = skipUnlessRoot();
const made: Netns[] = [];
after(() => { for (const ns of made) ns.destroy(); });
const netns = (): Netns => { const ns = Netns.create('wl'); made.push(ns); return ns; };
const fds = (): number => readdirSync('/proc/self/fd').length;

/** Connect to @weir/proxy from inside `ns` (node, as the proxy does) and print the first line or the error code. */
function dialFrom(ns: Netns): Promise<string> {
  const js = `const s=require('net').connect('\\0weir/proxy');s.on('data',d=>{process.stdout.write(String(d).split('\\n')[0]);process.exit(0)});s.on('error',e=>{process.stdout.write(e.code);process.exit(0)})`;
  return new Promise((resolve, reject) => execFile('ip', ['netns', 'exec', ns.name, process.execPath, '-e', js], { encoding: 'utf8', timeout: 10_000 }, (err, out) => (err ? reject(err) : resolve(out))));
}

test('the pod socket answers inside its netns only, and closes without leaking fds', { skip }, async () => {
  const [a, b] = [netns(), netns()];
  const served: string[] = [];
  const errors: string[] = [];
  const pl = new PodListeners({
    logger: pino({ level: 'silent' }),
    onError: (r) => errors.push(r),
    serve: (sock, identify) => { void identify(sock).then((id) => { served.push(id.identity?.name ?? '?'); sock.end(encode({ type: 'refused', reason: `you are ${id.identity?.name}` })); }); },
  });
  const before = fds();
  assert.equal(await pl.open('a', a.path, () => ({ namespace: 'ns', name: 'pod-a', uid: 'ua', ips: [] })), true);
  assert.equal(fds(), before + abstractAddresses('weir/proxy').length, 'one fd per bound address');
  assert.match(await dialFrom(a), /you are pod-a/);
  assert.equal(await dialFrom(b), 'ECONNREFUSED', 'another netns has no such name');
  // The host (the agent's own netns) cannot reach it either.
  const fromHost = await new Promise<string>((resolve) => net.connect('\0weir/proxy').on('connect', () => resolve('connected')).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error')));
  assert.equal(fromHost, 'ECONNREFUSED');
  assert.deepEqual(served, ['pod-a']);
  // Idempotent open; close gives every fd back and the name is free again.
  assert.equal(await pl.open('a', a.path, () => undefined), true);
  assert.equal(fds(), before + 2);
  await pl.close('a');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fds(), before);
  assert.equal(await dialFrom(a), 'ECONNREFUSED');
  assert.deepEqual(errors, []);
  await pl.closeAll();
});

test('a squatted name is reported, never shared; the agent\'s own netns is refused', { skip }, async () => {
  const ns = netns();
  const squatter = ns.spawn('socat', ['ABSTRACT-LISTEN:weir/proxy,fork', 'SYSTEM:echo squatter']);
  try {
    for (let i = 0; i < 50 && !ns.exec('ss', ['-xlnH']).includes('@weir/proxy'); i++) await new Promise((r) => setTimeout(r, 50));
    const errors: string[] = [];
    const pl = new PodListeners({ logger: pino({ level: 'silent' }), onError: (r) => errors.push(r), serve: (s) => s.destroy() });
    const before = fds();
    assert.equal(await pl.open('s', ns.path, () => undefined), false);
    assert.deepEqual(errors, ['EADDRINUSE']);
    assert.equal(fds(), before, 'a failed open keeps no fd');
    assert.equal(await pl.open('self', '/proc/self/ns/net', () => undefined), false);
    assert.deepEqual(errors, ['EADDRINUSE', 'own-netns']);
    assert.equal(await pl.open('gone', '/run/netns/does-not-exist-wl', () => undefined), false);
    assert.deepEqual(errors, ['EADDRINUSE', 'own-netns', 'ENOENT']);
    assert.deepEqual(pl.keys(), []);
    await pl.closeAll();
  } finally {
    squatter.kill('SIGKILL');
  }
});
