// The webhook's JSONPatch generator against an independent RFC 6902
// implementation: applying diff(a, b) to a gives b, keys with "/" and "~"
// are escaped, untouched fields get no operation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import jsonpatch from 'fast-json-patch';
import { diff, pointerToken } from '../../src/injector/json-patch.js';

const cases: [string, unknown, unknown][] = [
  ['add annotations with slashes and tildes', { metadata: { name: 'p' } }, { metadata: { name: 'p', annotations: { 'sidecar.istio.io/status': '{}', 'a~b': 'x' } } }],
  ['replace an array whole', { spec: { containers: [{ name: 'a' }] } }, { spec: { containers: [{ name: 'weir-proxy' }, { name: 'a' }] } }],
  ['remove a key, change a scalar', { a: 1, b: { c: 2, d: 3 } }, { a: 2, b: { c: 2 } }],
  ['nested add inside existing map', { metadata: { labels: { app: 'x' } } }, { metadata: { labels: { app: 'x', 'security.istio.io/tlsMode': 'istio' } } }],
  ['type change object → array', { x: { y: 1 } }, { x: [1] }],
];

for (const [what, a, b] of cases) {
  test(`diff: ${what}`, () => {
    const ops = diff(a, b);
    const out = jsonpatch.applyPatch(structuredClone(a), ops as jsonpatch.Operation[], true, false).newDocument;
    assert.deepEqual(out, b);
  });
}

test('diff: equal documents give no operations; unchanged siblings are not touched', () => {
  assert.deepEqual(diff({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), []);
  const ops = diff({ metadata: { name: 'p', labels: { app: 'x' } }, spec: { n: 1 } }, { metadata: { name: 'p', labels: { app: 'x', t: 'y' } }, spec: { n: 1 } });
  assert.deepEqual(ops, [{ op: 'add', path: '/metadata/labels/t', value: 'y' }]);
});

test('pointer tokens: ~ then /', () => {
  assert.equal(pointerToken('sidecar.istio.io/status'), 'sidecar.istio.io~1status');
  assert.equal(pointerToken('a~/b'), 'a~0~1b');
});
