// Pure parts of weir-cni and the installer: conf/env validation (each error
// names its field and carries the right CNI code) and conf chaining rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConf, parseEnv, parseCniArgs } from '../../src/cni/conf.js';
import { CniError, versionAtLeast } from '../../src/cni/spec.js';
import { chainedConf, unchainedConf, parseConfText, sameJson } from '../../src/agent/installer-conf.js';

function codeOf(fn: () => unknown): { code: number; msg: string } {
  try { fn(); } catch (e) { assert.ok(e instanceof CniError, String(e)); return { code: e.code, msg: e.message }; }
  assert.fail('expected a CniError');
}

test('parseConf: defaults, and every accepted version', () => {
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const c = parseConf(JSON.stringify({ cniVersion: v, name: 'n', type: 'weir-cni' }));
    assert.equal(c.cniVersion, v);
    assert.equal(c.agentSocket, '/var/run/weir/cni.sock');
    assert.deepEqual(c.excludeNamespaces, ['kube-system']);
    assert.equal(c.agentTimeoutMs, 5000);
  }
});

test('parseConf: errors name the field with the spec code', () => {
  assert.equal(codeOf(() => parseConf('not json')).code, 6);
  assert.equal(codeOf(() => parseConf('[]')).code, 6);
  assert.deepEqual(codeOf(() => parseConf('{"name":"n"}')), { code: 7, msg: 'stdin.cniVersion: missing' });
  assert.equal(codeOf(() => parseConf('{"cniVersion":"9.9.9","name":"n"}')).code, 1);
  assert.match(codeOf(() => parseConf('{"cniVersion":"1.0.0"}')).msg, /^stdin\.name:/);
  assert.match(codeOf(() => parseConf('{"cniVersion":"1.0.0","name":"n","agentTimeoutMs":50}')).msg, /^stdin\.agentTimeoutMs:.*between 100 and 30000/);
  assert.match(codeOf(() => parseConf('{"cniVersion":"1.0.0","name":"n","excludeNamespaces":[""]}')).msg, /^stdin\.excludeNamespaces:/);
  assert.match(codeOf(() => parseConf('{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":{}}}')).msg, /^stdin\.prevResult\.ips:/);
  assert.match(codeOf(() => parseConf('{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":1}]}')).msg, /valid-attachments\[0\]/);
});

test('parseConf: prevResult addresses without prefix; v4 and v6', () => {
  const c = parseConf(JSON.stringify({ cniVersion: '1.0.0', name: 'n', prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.1.2.3/24' }, { address: 'fd00::5/64' }] } }));
  assert.deepEqual(c.ips, ['10.1.2.3', 'fd00::5']);
});

test('parseEnv / CNI_ARGS: containerd and podman forms; bad env is code 4', () => {
  const e = parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u' });
  assert.deepEqual([e.podNamespace, e.podName, e.podUid], ['ns', 'p', 'u']);
  const podman = parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAME=p' });
  assert.equal(podman.podNamespace, undefined);
  assert.equal(podman.podName, 'p');
  // containerd's second DEL: no netns.
  assert.equal(parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0' }).netns, '');
  assert.deepEqual(codeOf(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0' })), { code: 4, msg: 'CNI_NETNS: missing' });
  assert.match(codeOf(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a/b', CNI_NETNS: '/x', CNI_IFNAME: 'eth0' })).msg, /^CNI_CONTAINERID/);
  assert.match(codeOf(() => parseCniArgs('K8S_POD_NAME')).msg, /^CNI_ARGS/);
});

test('versionAtLeast', () => {
  assert.ok(versionAtLeast('1.1.0', '1.1.0'));
  assert.ok(versionAtLeast('1.0.0', '0.4.0'));
  assert.ok(!versionAtLeast('0.3.1', '0.4.0'));
});

test('chainedConf: appends last, replaces an outdated weir entry in place of a duplicate, keeps other fields', () => {
  const list = parseConfText('/x/10.conflist', JSON.stringify({ cniVersion: '0.4.0', name: 'k8s', disableCheck: true, plugins: [{ type: 'calico' }, { type: 'weir-cni', agentSocket: '/old' }, { type: 'bandwidth' }] }), 0o644)!;
  const out = chainedConf(list, { type: 'weir-cni', agentSocket: '/new' });
  assert.deepEqual(out, { cniVersion: '0.4.0', name: 'k8s', disableCheck: true, plugins: [{ type: 'calico' }, { type: 'bandwidth' }, { type: 'weir-cni', agentSocket: '/new' }] });
  const single = parseConfText('/x/10.conf', JSON.stringify({ cniVersion: '0.3.1', name: 'b', type: 'bridge' }), 0o600)!;
  assert.equal(single.isList, false);
  assert.deepEqual(chainedConf(single, { type: 'weir-cni' }), { cniVersion: '0.3.1', name: 'b', plugins: [{ cniVersion: '0.3.1', name: 'b', type: 'bridge' }, { type: 'weir-cni' }] });
  assert.deepEqual((unchainedConf(parseConfText('/x/a.conflist', JSON.stringify(out), 0o644)!, 'weir-cni').plugins as unknown[]).length, 2);
  assert.ok(sameJson({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }));
  assert.equal(parseConfText('/x/a.conflist', '{"plugins":[]}', 0o644), undefined);
  assert.equal(parseConfText('/x/a.conflist', '{"type":"bridge"}', 0o644), undefined);
});

test('parseHttpAnswer: the agent answer framing, and clear errors for anything else', async () => {
  const { parseHttpAnswer } = await import('../../src/cni/agent-client.js');
  const ok = parseHttpAnswer(Buffer.from('HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nContent-Length: 13\r\n\r\n{"cniCode":11}'));
  assert.equal(ok.status, 503);
  assert.equal(ok.body, '{"cniCode":11');
  assert.equal(parseHttpAnswer(Buffer.from('HTTP/1.1 200 OK\r\n\r\n{}')).body, '{}');
  assert.throws(() => parseHttpAnswer(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}')), /truncated/);
  assert.throws(() => parseHttpAnswer(Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n')), /transfer-encoding/);
  assert.throws(() => parseHttpAnswer(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n')), /not an HTTP answer/);
  assert.throws(() => parseHttpAnswer(Buffer.from('HTTP/1.1 200 OK\r\n')), /incomplete/);
});

test('writeFileAtomic: mode kept, no temp files left, a failed precondition replaces nothing', async () => {
  const { mkdtempSync, readFileSync, readdirSync, statSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { writeFileAtomic, PreconditionFailed } = await import('../../src/cni/atomic-file.js');
  const d = mkdtempSync(path.join(tmpdir(), 'wc-atomic-'));
  try {
    const f = path.join(d, '10-x.conflist');
    writeFileSync(f, 'old');
    await writeFileAtomic(f, 'new', 0o640);
    assert.equal(readFileSync(f, 'utf8'), 'new');
    assert.equal(statSync(f).mode & 0o777, 0o640);
    await assert.rejects(writeFileAtomic(f, 'clobber', 0o640, async () => false), PreconditionFailed);
    assert.equal(readFileSync(f, 'utf8'), 'new');
    assert.deepEqual(readdirSync(d), ['10-x.conflist']);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
