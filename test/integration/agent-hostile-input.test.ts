// The defects of issue #17, each against a real `weir agent` process and the
// real C relay: hostile bytes on proxy.sock and admin.sock, the CNI input
// limit, the excluded-namespace shortcut, prevResult addresses, and ADDs
// aimed at the node's own network namespace. Each test failed on the code
// before the fix (the agent died, or the bad input was accepted).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { AgentChild, RELAY, meshPod } from '../support/agent-child.js';
import { confText, runRelay, sandboxEnv } from '../support/relay.js';
import { runPlugin } from '../../src/cni/plugin.js';

function adminGet(sock: string, rawTarget: string): Promise<{ status: number; body: string }> {
  // Raw bytes: Node's own client would refuse to send such a target.
  return new Promise((resolve, reject) => {
    const s = net.connect(sock, () => s.write(`GET ${rawTarget} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let text = '';
    s.on('data', (c: Buffer) => { text += c.toString(); });
    s.on('error', reject);
    s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4) }));
  });
}

function getJson(sock: string, p: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: sock, path: p }, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => { t += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(t) }));
    }).on('error', reject);
  });
}

async function metric(url: string, re: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(re.exec(text)?.[1] ?? 0);
}

/** The documented limit (docs/architecture.md); test/unit/cni-input-limit.test.ts ties it to the code. */
const MAX_CNI_INPUT_BYTES = 8 * 1024 * 1024;

const weirTables = (ns: Netns): string => ns.exec('nft', ['list', 'tables']).split('\n').filter((l) => /weir/.test(l)).join('\n');

describe('hostile input against a running agent', { skip: skipUnlessRoot() || (!existsSync(RELAY) && 'dist/weir-cni not built (npm run build)'), timeout: 120_000 }, () => {
  let agent: AgentChild;
  const namespaces: Netns[] = [];
  before(async () => {
    agent = await AgentChild.create('wk-hostile-node');
    for (const n of ['cap', 'big', 'ips', 'hostns']) agent.api.put(meshPod(n, 'default', 'wk-hostile-node'));
    await agent.start();
  });
  after(async () => {
    await agent?.stop();
    for (const ns of namespaces) ns.destroy();
  });

  test('a line `null` on proxy.sock: error reply, connection closed, agent alive and counting', async () => {
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect(agent.proxySocket, () => s.write('null\n'));
      let t = '';
      s.on('data', (c: Buffer) => { t += c.toString(); });
      s.on('error', () => undefined);
      s.on('close', () => resolve(t));
    });
    assert.match(reply, /"type":"error".*must be a JSON object, got null/);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(agent.alive, `agent died:\n${agent.log.slice(-2000)}`);
    // A well-formed hello is still answered, refused with the reason: this agent's
    // host-proc is not its own pid namespace's /proc, so the host socket
    // identifies no one by pid (pods use their @weir/proxy socket).
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect(agent.proxySocket, () => s.write('{"type":"hello","versions":[1]}\n'));
      let t = '';
      s.on('data', (c: Buffer) => { t += c.toString(); });
      s.on('close', () => resolve(t));
    });
    assert.match(answer, /"type":"refused".*does not identify proxies by pid/);
    assert.ok(await metric(agent.metricsUrl, /weir_agent_bad_peer_messages_total\{socket="proxy.sock"\} (\d+)/) >= 1);
  });

  test('`GET //[` on admin.sock: 400 naming the request target, agent alive, /v1/status still served', async () => {
    const r = await adminGet(agent.adminSocket, '//[');
    assert.equal(r.status, 400, r.body);
    assert.match(r.body, /request target/);
    for (const t of ['/v1/pods/%ZZ/x/rules', '/v1/pods/UPPER/x/rules', 'http://evil/v1/status', '*']) assert.equal((await adminGet(agent.adminSocket, t)).status, 400, t);
    assert.ok(agent.alive, `agent died:\n${agent.log.slice(-2000)}`);
    const st = await getJson(agent.adminSocket, '/v1/status');
    assert.equal(st.status, 200);
    assert.ok(await metric(agent.metricsUrl, /weir_agent_bad_peer_messages_total\{socket="admin.sock"\} (\d+)/) >= 2);
  });

  test('one CNI input limit: a 2 MiB conf is served; one byte over the limit is code 4 naming it, with and without the agent, and in the Node plugin', async () => {
    const ns = Netns.create('wkbig');
    namespaces.push(ns);
    const pad = (n: number, sock = agent.cniSocket): string => {
      const base = confText(sock);
      return `${base.slice(0, -1)},"padding":"${'x'.repeat(n - base.length - 13)}"}`;
    };
    const two = pad(2 * 1024 * 1024);
    const ok = await runRelay(sandboxEnv('ADD', 'wkbig1', ns.path, 'default', 'big'), two);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(weirTables(ns), /weir_nat/);
    const atLimit = pad(MAX_CNI_INPUT_BYTES);
    assert.equal(Buffer.byteLength(atLimit), MAX_CNI_INPUT_BYTES);
    assert.equal((await runRelay(sandboxEnv('ADD', 'wkbig1', ns.path, 'default', 'big'), atLimit)).code, 0, 'exactly the limit is accepted');
    const over = atLimit + ' ';
    for (const sock of [agent.cniSocket, '/nonexistent/agent.sock']) {
      const r = await runRelay(sandboxEnv('ADD', 'wkbig2', ns.path, 'default', 'big'), pad(MAX_CNI_INPUT_BYTES, sock) + ' ');
      assert.equal(r.code, 1);
      assert.equal(r.json?.code, 4, r.stdout);
      assert.match(String(r.json?.msg), /CNI input limit of 8388608 bytes/);
    }
    const node = await runPlugin(sandboxEnv('ADD', 'wkbig2', ns.path, 'default', 'big'), over);
    assert.equal(JSON.parse(node.stdout).code, 4);
    assert.match(JSON.parse(node.stdout).msg, /CNI input limit of 8388608 bytes/);
    assert.ok(agent.alive);
  });

  test('excluded-namespace shortcut validates what it echoes, with the agent path\'s codes', async () => {
    const cases: { name: string; env?: Record<string, string | undefined>; prev?: unknown; conf?: Record<string, unknown>; code: number; field: RegExp }[] = [
      { name: 'prevResult a string', prev: 'str', code: 7, field: /stdin\.prevResult: must be an object/ },
      { name: 'prevResult a number', prev: 42, code: 7, field: /stdin\.prevResult: must be an object/ },
      { name: 'no CNI_CONTAINERID', env: { CNI_CONTAINERID: undefined }, code: 4, field: /CNI_CONTAINERID: missing/ },
      { name: 'no CNI_IFNAME', env: { CNI_IFNAME: undefined }, code: 4, field: /CNI_IFNAME: missing/ },
      { name: 'no CNI_NETNS', env: { CNI_NETNS: undefined }, code: 4, field: /CNI_NETNS: missing/ },
      { name: 'relative CNI_NETNS', env: { CNI_NETNS: 'netns/x' }, code: 4, field: /CNI_NETNS: must be an absolute path/ },
      { name: 'bad container id', env: { CNI_CONTAINERID: '../x' }, code: 4, field: /CNI_CONTAINERID: must be alphanumeric/ },
      { name: 'bad IPv4', prev: { ips: [{ address: '10.0.0.1/24' }, { address: '999.1.1.1/24' }] }, code: 4, field: /stdin\.prevResult\.ips\[1\]\.address/ },
      { name: 'garbage CIDR', prev: { ips: [{ address: 'abc/999' }] }, code: 4, field: /stdin\.prevResult\.ips\[0\]\.address/ },
      { name: 'no name', conf: { name: '' }, code: 7, field: /stdin\.name/ },
    ];
    for (const c of cases) {
      const codes: number[] = [];
      for (const namespace of ['kube-system', 'default']) {
        const env = { ...sandboxEnv('ADD', 'wkexcl1', '/run/netns/wk-nonexistent', namespace, 'cap'), ...c.env };
        const r = await runRelay(env, confText(agent.cniSocket, c.prev ?? { ips: [] }, c.conf));
        assert.equal(r.code, 1, `${c.name} (${namespace}): ${r.stdout}`);
        assert.match(String(r.json?.msg), c.field, `${c.name} (${namespace})`);
        codes.push(r.json?.code as number);
      }
      assert.deepEqual(codes, [c.code, c.code], `${c.name}: same code on the excluded shortcut and the agent path`);
    }
    const good = await runRelay(sandboxEnv('ADD', 'wkexcl1', '/run/netns/wk-nonexistent', 'kube-system', 'cap'), confText('/nonexistent/sock', { cniVersion: '1.0.0', ips: [{ address: 'fd00::5/64' }] }));
    assert.equal(good.code, 0, good.stdout);
    assert.deepEqual(JSON.parse(good.stdout), { cniVersion: '1.0.0', ips: [{ address: 'fd00::5/64' }] });
  });

  test('prevResult addresses are parsed strictly: rejected with code 4 naming the field, nothing programmed or stored', async () => {
    const ns = Netns.create('wkips');
    namespaces.push(ns);
    for (const [i, bad] of [['0', '999.1.1.1/24'], ['0', 'abc/999'], ['0', '10.0.0.1/33'], ['0', '010.0.0.1/8'], ['0', '10.0.0.1']] as const) {
      const r = await runRelay(sandboxEnv('ADD', 'wkips1', ns.path, 'default', 'ips'), confText(agent.cniSocket, { ips: [{ address: bad }] }));
      assert.equal(r.json?.code, 4, `${bad}: ${r.stdout}`);
      assert.match(String(r.json?.msg), new RegExp(`prevResult\\.ips\\[${i}\\]\\.address`));
    }
    assert.equal(weirTables(ns), '');
    const store = JSON.parse(readFileSync(path.join(agent.runDir, 'sandboxes.json'), 'utf8')) as { sandboxes: { containerId: string }[] };
    assert.equal(store.sandboxes.some((s) => s.containerId === 'wkips1'), false);
  });

  test('ADD into the host\'s or the agent\'s netns, or a path that is not a netns, is refused and programs nothing', async () => {
    const hostBefore = new Set((await import('node:child_process')).execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).split('\n'));
    const targets: [string, RegExp][] = [
      ['/proc/self/ns/net', /the weir agent's own network namespace/],
      [`/proc/${agent.pid}/ns/net`, /the weir agent's own network namespace/],
      [`/proc/${process.pid}/ns/net`, /own network namespace|host's network namespace/],
      ['/proc/self/ns/uts', /not a network namespace/],
      ['/etc/hostname', /not a network namespace/],
      ['/run/netns/wk-does-not-exist', /cannot be examined/],
    ];
    for (const [netns, why] of targets) {
      const r = await runRelay(sandboxEnv('ADD', 'wkhost1', netns, 'default', 'hostns'), confText(agent.cniSocket));
      assert.equal(r.code, 1, `${netns}: ${r.stdout}`);
      assert.equal(r.json?.code, 4, `${netns}: ${r.stdout}`);
      assert.match(String(r.json?.msg), /^CNI_NETNS: /);
      assert.match(String(r.json?.msg), why, netns);
    }
    const hostAfter = (await import('node:child_process')).execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).split('\n');
    assert.deepEqual(hostAfter.filter((l) => /weir/.test(l) && !hostBefore.has(l)), [], 'no weir table appeared in the host netns');
    const store = JSON.parse(readFileSync(path.join(agent.runDir, 'sandboxes.json'), 'utf8')) as { sandboxes: { containerId: string }[] };
    assert.equal(store.sandboxes.some((s) => s.containerId === 'wkhost1'), false, 'no record');
    // A real pod netns still works.
    const ns = Netns.create('wkhost');
    namespaces.push(ns);
    const ok = await runRelay(sandboxEnv('ADD', 'wkhost2', ns.path, 'default', 'hostns'), confText(agent.cniSocket));
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(weirTables(ns), /weir_nat/);
  });
});
