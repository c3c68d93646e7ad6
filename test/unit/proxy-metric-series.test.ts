// The keyed istio_* request metrics (src/proxy/telemetry/series.ts) must
// scrape exactly as prom-client's Counter and Histogram did — same lines,
// same label order, same bucket layout — since dashboards and the suites
// read that text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { KeyedCounter, KeyedHistogram, seriesKey } from '../../src/proxy/telemetry/series.js';
import { ENVOY_BUCKETS, ISTIO_HTTP_LABELS, unknownLabels, type IstioHttpLabels } from '../../src/proxy/metrics.js';

function labelSet(code: string, svc: string): IstioHttpLabels {
  // Built in the order RequestTelemetry builds it; a value that needs escaping included.
  const l = { ...unknownLabels('source'), response_code: '0', grpc_response_status: '' } as IstioHttpLabels;
  l.request_protocol = 'http';
  l.destination_service = svc;
  l.response_code = code;
  return l;
}

test('keyed counter and histogram scrape as prom-client\'s do', async () => {
  const oldReg = new Registry();
  const newReg = new Registry();
  const oc = new Counter({ name: 'istio_requests_total', help: 'HTTP/gRPC requests', labelNames: ISTIO_HTTP_LABELS, registers: [oldReg] });
  const oh = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration, ms', labelNames: ISTIO_HTTP_LABELS, buckets: ENVOY_BUCKETS, registers: [oldReg] });
  const nc = new KeyedCounter('istio_requests_total', 'HTTP/gRPC requests', ISTIO_HTTP_LABELS, [newReg]);
  const nh = new KeyedHistogram('istio_request_duration_milliseconds', 'Request duration, ms', ISTIO_HTTP_LABELS, ENVOY_BUCKETS, [newReg]);
  const sets = [labelSet('200', 'a.ns.svc.cluster.local'), labelSet('503', 'b"q\\.ns'), labelSet('200', 'a.ns.svc.cluster.local')];
  const values = [0.2, 0.5, 3, 7000, 1e9, 42.5];
  for (let i = 0; i < 60; i++) {
    const l = { ...sets[i % sets.length] };
    const v = values[i % values.length];
    oc.inc(l); oh.observe(l, v);
    const k = seriesKey(l, ISTIO_HTTP_LABELS);
    nc.inc(k, l); nh.observe(k, l, v);
  }
  oc.inc(sets[1], 5);
  nc.inc(seriesKey(sets[1], ISTIO_HTTP_LABELS), sets[1], 5);
  const text = await newReg.metrics();
  assert.equal(text, await oldReg.metrics());
  assert.match(text, /istio_requests_total\{reporter="source",.*response_code="503",grpc_response_status=""\} 25/);
  // The JSON form too, as serialised (prom-client adds undefined exemplar fields that JSON drops).
  const json = async (r: Registry) => JSON.parse(JSON.stringify(await r.getMetricsAsJSON())) as unknown;
  assert.deepEqual(await json(newReg), await json(oldReg));
});

test('keyed metrics reject what prom-client rejects: a missing label, a bad value', () => {
  const reg = new Registry();
  const c = new KeyedCounter('c_total', 'c', ['a', 'b'], [reg]);
  const h = new KeyedHistogram('h', 'h', ['a'], [1, 2], [reg]);
  assert.throws(() => c.inc('x', { a: '1' }), /label b missing/);
  assert.throws(() => c.inc(seriesKey({ a: '1', b: '2' }, ['a', 'b']), { a: '1', b: '2' }, -1), /finite number >= 0/);
  assert.throws(() => h.observe('y', { a: '1' }, Number.NaN), /finite number/);
});

test('folded per-bucket counts (the native HTTP path\'s batches) scrape the same as the observations they stand for', async () => {
  const seen = new Registry();
  const folded = new Registry();
  const a = new KeyedHistogram('istio_request_duration_milliseconds', 'Request duration, ms', ISTIO_HTTP_LABELS, ENVOY_BUCKETS, [seen]);
  const b = new KeyedHistogram('istio_request_duration_milliseconds', 'Request duration, ms', ISTIO_HTTP_LABELS, ENVOY_BUCKETS, [folded]);
  const l = labelSet('200', 'a.ns.svc.cluster.local');
  const k = seriesKey(l, ISTIO_HTTP_LABELS);
  const values = [0.2, 0.5, 3, 7000, 1e9, 42.5, 5, 5];
  // As the engine counts: one slot per bound (value <= bound, first match), one above every bound.
  const per = new Array<number>(ENVOY_BUCKETS.length + 1).fill(0);
  for (const v of values) {
    a.observe(k, l, v);
    const i = ENVOY_BUCKETS.findIndex((x) => v <= x);
    per[i < 0 ? ENVOY_BUCKETS.length : i]++;
  }
  // Two batches, as two takes of the engine's stats would deliver them.
  const half = per.map((n) => Math.floor(n / 2));
  b.fold(k, l, half, values.slice(0, 4).reduce((x, y) => x + y, 0), half.reduce((x, y) => x + y, 0));
  b.fold(k, l, per.map((n, i) => n - half[i]), values.slice(4).reduce((x, y) => x + y, 0), values.length - half.reduce((x, y) => x + y, 0));
  assert.equal(await folded.metrics(), await seen.metrics());
});
