// `npm run demo -- --netns` end to end, its output asserted line by line so
// the demo cannot go stale again: the Service VIP answered through both
// proxies, DNS through the captured port 53 answering the service name with
// the VIP, `weir check`/`weir pods` from the real agent, no SKIPPED step,
// and everything it created removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { skipUnlessRoot } from '../support/netns.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const built = existsSync(path.join(REPO, 'dist/weir.mjs')) && existsSync(path.join(REPO, 'dist/weir-cni'));

test('the netns demo tells the containerd demo\'s story, with nothing skipped or stale', { timeout: 240_000, skip: skipUnlessRoot() || (!built && 'dist/ not built (npm run build)') }, async () => {
  const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'test/demo/demo.ts', '--netns'], { cwd: REPO, encoding: 'utf8', timeout: 220_000, env: { ...process.env, FORCE_COLOR: '0' } },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }));
  });
  assert.equal(code, 0, out);
  assert.doesNotMatch(out, /SKIPPED|not yet|not embedded|fallback to|no line: the connection was not captured/i);

  const svc = /Service demo\/echo: ClusterIP (10\.96\.\d+\.\d+):80 -> (10\.\d+\.\d+\.\d+):8080/.exec(out);
  assert.ok(svc, `the Service line:\n${out}`);
  const [, vip, serverIp] = svc;
  assert.match(out, /\["bridge \(ipam host-local\)","weir-cni"\]/, 'weir-cni chained by the installer');
  assert.match(out, /programmed by weir-cni -> weir agent/);
  assert.match(out, /\| table inet weir_nat \{/);
  assert.match(out, new RegExp(`connects to Service echo \\(${vip.replace(/\./g, '\\.')}:80\\)`));
  assert.match(out, /the app got: "hello from we-server"/);
  assert.match(out, new RegExp(`dst=${vip.replace(/\./g, '\\.')} sport=\\d+ dport=80 src=127\\.0\\.0\\.1 .*sport=15001`), 'conntrack shows the redirect to 15001');
  assert.match(out, new RegExp(`outbound: \\S+ -> original dst ${vip.replace(/\./g, '\\.')}:80 -> upstream ${serverIp.replace(/\./g, '\\.')}:8080`));
  assert.match(out, new RegExp(`inbound: \\S+ -> original dst ${serverIp.replace(/\./g, '\\.')}:8080 -> upstream 127\\.0\\.0\\.1:8080`));
  assert.match(out, /istio_tcp_connections_opened_total\{reporter="source".*destination_service="echo\.demo\.svc\.cluster\.local".*\} 1/);
  // DNS through the captured port 53 (nothing listens on the resolver address).
  assert.match(out, /nslookup echo\.demo\.svc\.cluster\.local 10\.96\.0\.10/);
  assert.match(out, new RegExp(`Name:\\s+echo\\.demo\\.svc\\.cluster\\.local\\n\\s+\\|\\s+Address: ${vip.replace(/\./g, '\\.')}`));
  // The node agent's view, verified.
  assert.match(out, /demo\/we-client: ok \(captured\) netns=\/run\/netns\/we-c\w+ via=store/);
  assert.match(out, /\| POD\s+PHASE\s+CAPTURED\s+REASON\s+BACKEND\s+VERIFIED/);
  for (const p of ['we-server', 'we-client']) assert.match(out, new RegExp(`\\| demo/${p}\\s+\\S+\\s+yes\\s+captured\\s+nftables\\s+ok`));
  assert.match(out, /checked: the \d+ netns, dirs and bridges the demo created are gone\./);
});
