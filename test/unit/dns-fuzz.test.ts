// Throws thousands of malformed, random and truncated packets at the DNS
// proxy over UDP and TCP (including bogus length prefixes and half-sent
// frames) and checks it keeps answering valid queries and never crashes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import { startDnsProxy } from '../../src/dns/server.js';
import { staticRegistryView } from '../../src/dns/static-registry.js';
import { createLogger } from '../../src/common/log.js';
import { decode, encodeQuery, randomPort, startFakeUpstream, tcpQueries, testRegistry, udpQuery } from './dns-support.js';

const logger = createLogger({ name: 'dns-fuzz', fd: 2, level: 'fatal' });

/** A valid query mangled in one of several ways, or pure noise. */
function mutant(): Buffer {
  const names = ['web', 'db.ns.svc.cluster.local', 'ext.example', 'a.b.c.d.e.f', ''];
  const base = Buffer.from(encodeQuery(names[randomInt(names.length)], (['A', 'AAAA', 'TXT', 'ANY', 'SRV'] as dnsPacket.RecordType[])[randomInt(5)], { edns: randomInt(2) ? 1232 : undefined }));
  switch (randomInt(8)) {
    case 0: return randomBytes(randomInt(0, 600)); // noise
    case 1: return base.subarray(0, randomInt(0, base.length)); // truncated
    case 2: { // flipped bytes
      const b = Buffer.from(base);
      for (let i = 0; i < 1 + randomInt(6); i++) b[randomInt(b.length)] = randomInt(256);
      return b;
    }
    case 3: { // bogus section counts
      const b = Buffer.from(base);
      b.writeUInt16BE(randomInt(65536), 4 + 2 * randomInt(4));
      return b;
    }
    case 4: { // compression pointer loops / out-of-range pointers in the question
      const b = Buffer.from(base);
      b[12] = 0xc0; b[13] = randomInt(2) ? 12 : 255;
      return b;
    }
    case 5: { // label lengths past the end
      const b = Buffer.from(base);
      b[12] = 63;
      return b;
    }
    case 6: { // query with QR set (a "response")
      const b = Buffer.from(base);
      b[2] |= 0x80;
      return b;
    }
    default: return Buffer.concat([base, randomBytes(randomInt(1, 64))]); // trailing garbage
  }
}

test('malformed UDP and TCP input never stops the proxy from answering', async (t) => {
  const upstream = await startFakeUpstream({ 'A ext.example': { answers: [{ name: 'ext.example', type: 'A', ttl: 60, data: '203.0.113.7' }] } });
  t.after(() => upstream.close());
  const port = randomPort();
  const proxy = await startDnsProxy({
    registry: staticRegistryView(testRegistry()), podNamespace: 'ns', resolvConfPath: '/nonexistent',
    listen: { port, v6: null }, upstreams: [{ host: '127.0.0.1', port: upstream.port }], upstreamTimeoutMs: 300,
    tcpIdleTimeoutMs: 500, logger,
  });
  t.after(() => proxy.close());

  const assertAlive = async (round: number) => {
    // A flood can overflow the socket's receive buffer, so, like any stub
    // resolver, retry a lost datagram; a dead server fails all attempts.
    let r;
    for (let attempt = 0; !r; attempt++) {
      try {
        r = await udpQuery(port, 'web', 'A', { timeoutMs: 1000 });
      } catch (err) {
        if (attempt >= 4) throw new Error(`no UDP answer after round ${round}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(r.answers!.map((a) => a.data), ['10.96.0.10'], `UDP alive after round ${round}`);
    const [tcp] = await tcpQueries(port, [encodeQuery('web.ns', 'A')]);
    assert.deepEqual(decode(tcp).answers!.map((a) => a.data), ['10.96.0.10'], `TCP alive after round ${round}`);
  };

  // UDP: 5 rounds × 1000 packets, paced per round so the socket buffer is not the limit.
  const sock = dgram.createSocket('udp4');
  let udpReplies = 0;
  sock.on('message', () => { udpReplies++; });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.after(() => sock.close());
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 1000; i++) {
      const m = mutant();
      await new Promise<void>((r) => sock.send(m, port, '127.0.0.1', () => r()));
    }
    await assertAlive(round);
  }
  assert.ok(udpReplies > 500, `FORMERR/answers were sent for readable headers (${udpReplies})`);

  // TCP: streams of mutants with honest and bogus length prefixes, half-sent
  // frames and abrupt closes.
  for (let conn = 0; conn < 200; conn++) {
    await new Promise<void>((resolve) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.on('error', () => resolve());
      c.on('close', () => resolve());
      c.on('data', () => {});
      c.on('connect', () => {
        const frames: Buffer[] = [];
        for (let i = 0; i < 10; i++) {
          const m = mutant();
          const len = Buffer.alloc(2);
          const kind = randomInt(4);
          len.writeUInt16BE(kind === 0 ? randomInt(65536) : kind === 1 ? randomInt(12) : m.length);
          frames.push(len, m);
        }
        c.write(Buffer.concat(frames));
        setTimeout(() => c.destroy(), randomInt(0, 20));
      });
    });
  }
  await assertAlive(99);
  const s = proxy.stats();
  assert.ok(s.queries.malformed > 1000, `malformed counted (${s.queries.malformed})`);
});
