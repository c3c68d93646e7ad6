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
