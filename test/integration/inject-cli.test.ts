// `weir inject` as a user runs it: the real CLI process, a file or stdin,
// multi-document YAML out that parses and validates, a report per workload
// on stderr, and a bad manifest failing with exit code 2 naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { validateManifest } from '../support/kube-schema.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const FIX = path.join(REPO, 'test/fixtures/inject');

function weir(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, input, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('weir inject -f - (stdin): multi-document in, applyable multi-document out, one line per workload', () => {
  const r = weir(['inject', '-f', '-', '--native-sidecars', 'false'], fs.readFileSync(path.join(FIX, 'multi.yaml'), 'utf8'));
  assert.equal(r.status, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout).map((d) => { assert.deepEqual(d.errors, []); return d.toJS(); });
  assert.deepEqual(docs.map((d) => d.kind), ['Service', 'Pod', 'Pod', 'Deployment', 'ConfigMap', 'Pod']);
  for (const d of docs) validateManifest(d);
  assert.equal(docs[5].spec.containers[0].name, 'weir-proxy', 'regular container, first');
  assert.match(r.stderr, /Pod node-exporter: not injected \(host-network\)/);
  assert.match(r.stderr, /Pod dns-helper: not injected \(protected-namespace\)/);
  assert.match(r.stderr, /Deployment legacy: not injected \(pod-opted-out\)/);
  assert.match(r.stderr, /Pod worker: injected \(sidecar container\)/);
  // Same as the golden file the unit test holds.
  assert.equal(r.stdout, fs.readFileSync(path.join(REPO, 'test/golden/inject/multi.regular.yaml'), 'utf8'));
});

test('weir inject -f FILE -o OUT, and its output injected again is unchanged', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-inject-'));
  try {
    const out = path.join(dir, 'out.yaml');
    const r = weir(['inject', '-f', path.join(FIX, 'cronjob.yaml'), '-o', out, '--native-sidecars', 'true']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /CronJob cleanup: injected \(native sidecar\)/);
    const again = weir(['inject', '-f', out, '--native-sidecars', 'true']);
    assert.equal(again.status, 0);
    assert.equal(again.stdout, fs.readFileSync(out, 'utf8'));
    assert.match(again.stderr, /not injected \(already-injected\)/);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('a bad manifest or flag: exit 2, the message names the field', () => {
  const bad = weir(['inject', '-f', path.join(FIX, 'bad-quantity.yaml')]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /weir inject: .*bad-quantity\.yaml document 1 \(Pod bad\)\.metadata\.annotations\["sidecar\.istio\.io\/proxyMemory"\]: must be a Kubernetes quantity/);
  assert.equal(bad.stdout, '', 'nothing half-injected on stdout');
  const flag = weir(['inject', '-f', '-', '--native-sidecars', 'maybe'], 'kind: Pod\n');
  assert.equal(flag.status, 2);
  assert.match(flag.stderr, /--native-sidecars: must be auto, true or false/);
  const yaml = weir(['inject', '-f', '-'], 'kind: Pod\nmetadata: [\n');
  assert.equal(yaml.status, 2);
  assert.match(yaml.stderr, /stdin document 1: not valid YAML/);
});

test('weir injector (the process): serves POST /inject over HTTPS, stops cleanly on SIGTERM', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), 'injector', '--no-kube', '--native-sidecars', 'false', '--port', '0', '--host', '127.0.0.1'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "listening" line:\n${log}`)), 45_000);
      const check = () => { const m = /"port":(\d+),"nativeSidecars":false.*weir injector listening/.exec(log); if (m) { clearTimeout(t); resolve(Number(m[1])); } };
      child.stdout.on('data', check);
      child.once('exit', (c) => reject(new Error(`exited ${c}:\n${log}`)));
    });
    const review = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u1', kind: { group: '', version: 'v1', kind: 'Pod' }, namespace: 'shop', operation: 'CREATE', object: { metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'x' }] } } } });
    const { execFile } = await import('node:child_process');
    const out = await new Promise<string>((resolve, reject) => execFile('curl', ['-sSk', '--max-time', '10', '-H', 'content-type: application/json', '--data-binary', review, `https://127.0.0.1:${port}/inject`], (e, so) => (e ? reject(e) : resolve(so))));
    const body = JSON.parse(out);
    assert.equal(body.response.uid, 'u1');
    const ops = JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8')) as { path: string; value: { name: string }[] }[];
    assert.equal(ops.find((o) => o.path === '/spec/containers')?.value[0].name, 'weir-proxy');
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('weir injector --no-kube needs an explicit --native-sidecars', () => {
  const r = weir(['injector', '--no-kube', '--port', '0']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--native-sidecars: must be true or false with --no-kube/);
});
