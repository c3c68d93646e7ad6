// The answer cache: lifetimes from TTLs (RFC 2308 for negative answers),
// TTL rewriting on hits, LRU bounds by entries and bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { AnswerCache } from '../../src/dns/cache.js';
import { decode } from './dns-support.js';

const soa = (ttl: number, minimum: number): dnsPacket.Answer => ({
  name: 'example', type: 'SOA', ttl,
  data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum },
});

function response(name: string, o: { rcode?: number; answers?: dnsPacket.Answer[]; authorities?: dnsPacket.Answer[]; tc?: boolean } = {}): Buffer {
  return dnsPacket.encode({
    type: 'response', id: 1, flags: (o.rcode ?? 0) | (o.tc ? dnsPacket.TRUNCATED_RESPONSE : 0),
    questions: [{ type: 'A', name }], answers: o.answers ?? [], authorities: o.authorities ?? [],
  });
}

const a = (name: string, ttl: number, ip = '192.0.2.1'): dnsPacket.Answer => ({ name, type: 'A', ttl, data: ip });

test('lifetime is the smallest answer TTL; hits rewrite ID and count TTLs down', () => {
  const c = new AnswerCache({ maxEntries: 10, maxBytes: 1 << 20, maxTtlSeconds: 3600 });
  assert.equal(c.store('k', response('x.example', { answers: [a('x.example', 100), a('x.example', 40, '192.0.2.2')] }), 0), 40);
  const hit = decode(c.lookup('k', 4242, 10_500)!);
  assert.equal(hit.id, 4242);
  assert.deepEqual(hit.answers.map((r) => r.ttl), [90, 30]);
  assert.equal(c.lookup('k', 1, 40_000), undefined, 'expired after 40 s');
  assert.equal(c.size, 0);
});

test('negative answers: min(SOA TTL, SOA MINIMUM); none without SOA; never failures or TC', () => {
  const c = new AnswerCache({ maxEntries: 10, maxBytes: 1 << 20, maxTtlSeconds: 3600 });
  assert.equal(c.store('nx', response('nx.example', { rcode: 3, authorities: [soa(300, 60)] }), 0), 60);
  assert.equal(c.store('nodata', response('nd.example', { authorities: [soa(20, 60)] }), 0), 20);
  assert.equal(c.store('nosoa', response('ns.example', { rcode: 3 }), 0), 0);
  assert.equal(c.store('fail', response('f.example', { rcode: 2, answers: [a('f.example', 60)] }), 0), 0);
  assert.equal(c.store('tc', response('t.example', { tc: true, answers: [a('t.example', 60)] }), 0), 0);
  assert.equal(c.store('zero', response('z.example', { answers: [a('z.example', 0)] }), 0), 0);
  assert.equal(c.store('garbage', Buffer.from([1, 2, 3]), 0), 0);
  assert.equal(c.size, 2);
});

test('TTL capped by maxTtlSeconds', () => {
  const c = new AnswerCache({ maxEntries: 10, maxBytes: 1 << 20, maxTtlSeconds: 5 });
  assert.equal(c.store('k', response('x.example', { answers: [a('x.example', 86400)] }), 0), 5);
});

test('bounded: least recently used entries go first, by count and by bytes', () => {
  const c = new AnswerCache({ maxEntries: 3, maxBytes: 1 << 20, maxTtlSeconds: 3600 });
  for (const k of ['a', 'b', 'c']) c.store(k, response(`${k}.example`, { answers: [a(`${k}.example`, 60)] }), 0);
  assert.ok(c.lookup('a', 1, 1), 'touch a');
  c.store('d', response('d.example', { answers: [a('d.example', 60)] }), 1);
  assert.equal(c.size, 3);
  assert.equal(c.lookup('b', 1, 2), undefined, 'b was least recently used');
  assert.ok(c.lookup('a', 1, 2) && c.lookup('c', 1, 2) && c.lookup('d', 1, 2));

  const one = response('x.example', { answers: [a('x.example', 60)] });
  const small = new AnswerCache({ maxEntries: 1000, maxBytes: 2000, maxTtlSeconds: 3600 });
  for (let i = 0; i < 50; i++) small.store(`k${i}`, one, 0);
  assert.ok(small.bytes <= 2000, `bytes bounded (${small.bytes})`);
  assert.ok(small.size > 1 && small.size < 50, `some entries evicted (${small.size})`);
});
