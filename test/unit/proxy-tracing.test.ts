// Trace context parsing/writing and the Zipkin exporter's bounds, against a
// real loopback server that accepts and never answers (a hung collector).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { Counter, Registry } from 'prom-client';
import { readContext, writeContext } from '../../src/proxy/telemetry/tracing/trace-context.js';
import { resolveTracing } from '../../src/proxy/telemetry/tracing/config.js';
import { ZipkinExporter, type ZipkinSpan } from '../../src/proxy/telemetry/tracing/zipkin-exporter.js';
import { createLogger } from '../../src/common/log.js';

test('readContext: B3 multi, B3 single, traceparent, a bare sampling decision; malformed ignored', () => {
  assert.deepEqual(readContext({ 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' }), { traceId: '463ac35c9f6413ad', parentId: 'a2fb4a1d1a96d312', sampled: true });
  assert.deepEqual(readContext({ b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0' }), { traceId: '80f198ee56343ba864fe8b2a57d3eff7', parentId: 'e457b5a2e4d86bd1', sampled: false, b3Single: true });
  assert.deepEqual(readContext({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', sampled: true });
  assert.equal(readContext({ traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }), undefined, 'all-zero trace id is invalid');
  assert.equal(readContext({ 'x-b3-traceid': 'xyz', 'x-b3-spanid': '1' }), undefined);
  assert.equal(readContext({ 'x-b3-sampled': '0' })?.sampled, false);
  assert.equal(readContext({}), undefined);
});

test('writeContext: the proxy span becomes the next hop\'s parent in B3 and W3C; 64-bit ids padded for traceparent', () => {
  const out: Record<string, string | string[]> = { 'x-b3-flags': '1', b3: 'stale' };
  writeContext(out, { traceId: '463ac35c9f6413ad', parentId: 'a2fb4a1d1a96d312' }, '1111222233334444', true);
  assert.deepEqual(out, { 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': '1111222233334444', 'x-b3-parentspanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1', traceparent: '00-0000000000000000463ac35c9f6413ad-1111222233334444-01' });
  const single: Record<string, string | string[]> = {};
  writeContext(single, { traceId: '80f198ee56343ba864fe8b2a57d3eff7', parentId: 'e457b5a2e4d86bd1', b3Single: true }, 'aaaabbbbccccdddd', false);
  assert.equal(single.b3, '80f198ee56343ba864fe8b2a57d3eff7-aaaabbbbccccdddd-0-e457b5a2e4d86bd1');
});

test('tracing config: flags beat PROXY_CONFIG; bad values name their field', () => {
  assert.deepEqual(resolveTracing({}, {}), { zipkin: undefined, samplingPercent: 1 });
  assert.deepEqual(resolveTracing({}, { PROXY_CONFIG: '{"tracing":{"zipkin":{"address":"zipkin.istio-system:9411"},"sampling":10}}' }), { zipkin: { host: 'zipkin.istio-system', port: 9411 }, samplingPercent: 10 });
  assert.deepEqual(resolveTracing({ zipkinAddress: '[fd00::1]:9411', traceSampling: '100' }, { PROXY_CONFIG: '{"tracing":{"sampling":5}}' }), { zipkin: { host: 'fd00::1', port: 9411 }, samplingPercent: 100 });
  assert.throws(() => resolveTracing({ zipkinAddress: 'nohost' }, {}), /--zipkin-address/);
  assert.throws(() => resolveTracing({ traceSampling: '101' }, {}), /--trace-sampling/);
  assert.throws(() => resolveTracing({}, { PROXY_CONFIG: '{nope' }), /PROXY_CONFIG/);
  assert.throws(() => resolveTracing({}, { PROXY_CONFIG: '{"tracing":{"zipkin":{"address":9411}}}' }), /PROXY_CONFIG\.tracing\.zipkin\.address/);
});

const span = (i: number): ZipkinSpan => ({ traceId: 'a'.repeat(32), id: i.toString(16).padStart(16, '0'), kind: 'CLIENT', name: 'x', timestamp: 1e15, duration: 1, localEndpoint: { serviceName: 's' }, tags: { 'http.status_code': '200' } });

test('exporter: a hung collector costs a bounded queue and counted drops, never memory', async () => {
  const held: net.Socket[] = [];
  const hung = net.createServer((s) => { held.push(s); s.on('error', () => {}); }).listen(0, '127.0.0.1');
  await new Promise((r) => hung.once('listening', r));
  const reg = new Registry();
  const counter = new Counter({ name: 'spans', help: 'x', labelNames: ['outcome'], registers: [reg] });
  const ex = new ZipkinExporter('127.0.0.1', (hung.address() as net.AddressInfo).port, counter, createLogger({ name: 't', level: 'silent' }), { maxQueue: 100, maxBatch: 50, flushMs: 20, timeoutMs: 300 });
  for (let i = 0; i < 10_000; i++) ex.add(span(i));
  assert.ok(ex.queued() <= 100, `queued ${ex.queued()}`);
  const value = async (o: string) => ((await counter.get()).values.find((v) => v.labels.outcome === o)?.value ?? 0);
  assert.ok(await value('dropped_queue_full') >= 10_000 - 150);
  // The POST in flight times out: its batch is dropped and counted, not retried.
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(await value('dropped_export_failed') >= 50);
  await ex.close();
  for (const s of held) s.destroy();
  hung.close();
});

test('exporter: batches arrive as one JSON array per POST', async () => {
  const batches: unknown[][] = [];
  const srv = http.createServer((req, res) => { let b = ''; req.on('data', (d) => { b += d; }); req.on('end', () => { batches.push(JSON.parse(b) as unknown[]); res.writeHead(202); res.end(); }); }).listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  const reg = new Registry();
  const counter = new Counter({ name: 'spans', help: 'x', labelNames: ['outcome'], registers: [reg] });
  const ex = new ZipkinExporter('127.0.0.1', (srv.address() as net.AddressInfo).port, counter, createLogger({ name: 't', level: 'silent' }), { maxQueue: 1000, maxBatch: 100, flushMs: 30, timeoutMs: 1000 });
  for (let i = 0; i < 250; i++) ex.add(span(i));
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(batches.flat().length, 250);
  assert.ok(batches.every((b) => b.length <= 100));
  assert.equal((await counter.get()).values.find((v) => v.labels.outcome === 'exported')?.value, 250);
  await ex.close();
  srv.close();
});
