// proxy.sock is 0666 by design: any local user or pod can connect. Messages
// that are not what the protocol allows (null, lists, numbers, a hello with
// bad fields, garbage after an identified welcome) get one error line and
// that connection is closed; the agent counts them and keeps serving others.
// On the old code `null` threw inside the data handler and took the process down.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { startControlPlane, type PeerPodIdentity } from '../../src/controlplane/server.js';
import { LineDecoder } from '../../src/controlplane/protocol.js';

const dir = mkdtempSync(path.join(tmpdir(), 'wx-cph-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const ME: PeerPodIdentity = { namespace: 'shop', name: 'web-1', uid: 'u1', ips: ['10.0.0.1'] };

/** Sends raw lines, collects every message until the agent closes the connection (or timeout). */
async function converse(sock: string, lines: string[], opts: { afterWelcome?: string[] } = {}): Promise<{ msgs: Record<string, unknown>[]; closed: boolean }> {
  const s = net.connect(sock);
  const msgs: Record<string, unknown>[] = [];
  const d = new LineDecoder();
  let closed = false;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 2000);
    s.on('connect', () => { for (const l of lines) s.write(l); });
    s.on('data', (c: Buffer) => {
      for (const m of d.push(c)) {
        msgs.push(m as Record<string, unknown>);
        if ((m as { type?: string }).type === 'snapshot' && opts.afterWelcome) for (const l of opts.afterWelcome) s.write(l);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => { closed = true; clearTimeout(t); resolve(); });
  });
  s.destroy();
  return { msgs, closed };
}

test('malformed proxy messages get an error reply and a closed connection; the control plane keeps serving', async () => {
  const metrics = new Registry();
  const socketPath = path.join(dir, 'proxy.sock');
  const cp = await startControlPlane({
    kubeConfig: new KubeConfig(), socketPath, logger: pino({ level: 'silent' }), metrics,
    clusterDomain: 'cluster.local', identifyPeer: async () => ME,
    source: () => ({ start: async () => {}, stop: async () => {} }),
  });
  try {
    const bad: [string, RegExp][] = [
      ['null\n', /message: must be a JSON object, got null/],
      ['[]\n', /got a list/],
      ['5\n', /got number/],
      ['"hello"\n', /got string/],
      ['{"type":"hello","versions":"1"}\n', /hello\.versions: must be a non-empty list of integers/],
      ['{"type":"hello","versions":[1],"resume":5}\n', /hello\.resume/],
      ['{"type":"hello","versions":[1],"claimed":{"name":7}}\n', /hello\.claimed\.name: must be a string/],
      ['{"type":{"x":1}}\n', /type: unknown message type/],
      ['{not json\n', /JSON/],
    ];
    for (const [line, why] of bad) {
      const r = await converse(socketPath, [line]);
      assert.equal(r.closed, true, `connection closed after ${line.trim()}`);
      assert.equal(r.msgs.length, 1, `one reply to ${line.trim()}: ${JSON.stringify(r.msgs)}`);
      assert.equal(r.msgs[0].type, 'error');
      assert.match(String(r.msgs[0].reason), why);
    }
    // After an identified welcome and snapshot: null, a bad ack, an ack of a version never sent.
    for (const late of ['null\n', '{"type":"ack","version":"x"}\n', '{"type":"ack","version":99999}\n']) {
      const r = await converse(socketPath, ['{"type":"hello","versions":[1]}\n'], { afterWelcome: [late] });
      assert.deepEqual(r.msgs.map((m) => m.type), ['welcome', 'snapshot', 'error'], `after welcome, ${late.trim()}`);
      assert.equal(r.closed, true);
    }
    // A well-formed proxy is still served: welcome, snapshot, and its ack settles.
    const good = await converse(socketPath, ['{"type":"hello","versions":[1]}\n'], { afterWelcome: ['{"type":"ack","version":0}\n'] });
    assert.deepEqual(good.msgs.map((m) => m.type), ['welcome', 'snapshot']);
    const text = await metrics.metrics();
    const n = Number(/weir_agent_bad_peer_messages_total\{socket="proxy.sock"\} (\d+)/.exec(text)?.[1]);
    assert.equal(n, bad.length + 3, text);
  } finally {
    await cp.close();
  }
});
