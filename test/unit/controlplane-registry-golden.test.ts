// Golden service registry: the Services and EndpointSlices of
// test/fixtures/registry/*.yaml, fed to the RegistryBuilder one object at a
// time in file order (as the agent's informers do, src/controlplane/
// kube-source.ts), give the snapshot the agent sends to every proxy
// (src/controlplane/server.ts) — compared with test/golden/registry/<name>.json.
// Translators and new registry fields then change it visibly.
// UPDATE_GOLDEN=1 rewrites the goldens (review the diff, test/golden/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(root, 'fixtures', 'registry');
const golden = path.join(root, 'golden', 'registry');
const update = process.env.UPDATE_GOLDEN === '1';

type Obj = { kind: string } & (KubeService | KubeEndpointSlice);

function objects(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj).filter(Boolean);
}

/** The snapshot message's body as the proxy receives it (controlplane/server.ts). */
function wire(b: RegistryBuilder): string {
  const snap = b.snapshot();
  return JSON.stringify({ version: snap.version, clusterDomain: snap.clusterDomain, services: [...snap.services.values()] }, null, 2) + '\n';
}

const files = readdirSync(fixtures).filter((f) => f.endsWith('.yaml')).sort();

test('there are registry fixtures', () => {
  assert.ok(files.length >= 1);
});

for (const file of files) {
  const name = file.replace(/\.yaml$/, '');
  test(`registry golden: ${name}`, () => {
    const objs = objects(path.join(fixtures, file));
    const b = new RegistryBuilder();
    for (const o of objs) {
      if (o.kind === 'Service') b.upsertService(o as KubeService);
      else if (o.kind === 'EndpointSlice') b.upsertEndpointSlice(o as KubeEndpointSlice);
      else throw new Error(`${file}: unexpected kind ${o.kind}`);
    }
    const got = wire(b);
    const target = path.join(golden, `${name}.json`);
    if (update) { mkdirSync(golden, { recursive: true }); writeFileSync(target, got); }
    assert.equal(got, readFileSync(target, 'utf8'), `${name}: registry differs from ${path.relative(root, target)}`);

    // A relist (replaceAll) of the same objects gives the same services.
    const relisted = new RegistryBuilder();
    relisted.replaceAll(objs.filter((o) => o.kind === 'Service') as KubeService[], objs.filter((o) => o.kind === 'EndpointSlice') as KubeEndpointSlice[]);
    const byKey = (s: { namespace: string; name: string }[]) => [...s].sort((x, y) => `${x.namespace}/${x.name}`.localeCompare(`${y.namespace}/${y.name}`));
    assert.deepEqual(byKey([...relisted.snapshot().services.values()]), byKey([...b.snapshot().services.values()]));
  });
}
