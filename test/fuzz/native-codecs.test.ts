// Coverage-guided fuzzing (libFuzzer, with AddressSanitizer and UBSan) of the
// native codecs that read what peers send: the HTTP/1.1 head parser, chunked
// scanner and head builders (native/fuzz/h1_fuzz.cc), and the DNS fast path's
// query parser, TTL walker and answer table (native/fuzz/dns_fuzz.cc). The
// targets check properties too (a prefix of a complete head is incomplete;
// the head the proxy sends on parses again with the same body framing; an
// answer carries the query's ID and question), so a wrong answer fails as a
// crash does. Black-box fuzzing of the running proxy is test/fuzz/proxy.test.ts.
//
// Seeded (WEIR_FUZZ_SEED), bounded in time (WEIR_FUZZ_NATIVE_S per target).
// A failure prints the input (libFuzzer's base64 line) and keeps the
// artifact in the printed directory; replay with the printed command.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { REPO } from '../support/agent-child.js';
import { SEED } from './fuzz-support.js';

const run = promisify(execFile);
const SECONDS = Number(process.env.WEIR_FUZZ_NATIVE_S ?? 20);
const NATIVE = path.join(REPO, 'native');
const FLAGS = ['-g', '-O1', '-std=c++17', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined'];

interface Target { name: string; sources: string[]; libs: string[]; seeds: Buffer[] }

const crlf = (s: string) => s.replace(/\n/g, '\r\n');
/** h1_fuzz input: a mode byte (bit 0 response, bit 1 HEAD request, bit 7 a 64-byte head limit), then the bytes. */
const h1 = (mode: number, text: string) => Buffer.concat([Buffer.from([mode]), Buffer.from(crlf(text), 'latin1')]);
const H1_SEEDS = [
  h1(0, 'GET /a?b=1 HTTP/1.1\nHost: b.ns.svc.cluster.local\nUser-Agent: curl\nx-b3-traceid: 463ac35c9f6413ad\nx-b3-spanid: a2fb4a1d1a96d312\nConnection: keep-alive, x-foo\nx-foo: 1\n\n'),
  h1(0, 'POST /p HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n\n5;x=y\nhello\n0\nT: 1\n\n'),
  h1(0, 'PUT /x HTTP/1.0\nContent-Length: 3\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90\n\nabc'),
  h1(0, 'GET /ws HTTP/1.1\nHost: w\nConnection: Upgrade\nUpgrade: websocket\nExpect: 100-continue\n\n'),
  h1(1, 'HTTP/1.1 200 OK\nContent-Length: 2\nConnection: close\nx-weir-peer: abc\n\nok'),
  h1(1, 'HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n'),
  h1(3, 'HTTP/1.1 204 No Content\n\n'),
  // Regression (found by this target): a response with a transfer coding other than
  // chunked and a Content-Length was forwarded with the length and without the coding.
  h1(1, 'HTTP/1.1 200 OK\nTransfer-Encoding: gzip\nContent-Length: 5\n\nhello world'),
  // Regression: a head that reaches the limit exactly without ending is too large.
  Buffer.concat([Buffer.from([0x80]), Buffer.alloc(64, 'a')]),
];

/** dns_fuzz input: [query length][query][response]. */
function dnsSeed(query: Buffer, response: Buffer): Buffer {
  return Buffer.concat([Buffer.from([query.length]), query, response]);
}
const question = { type: 'A' as const, name: 'b.ns.svc.cluster.local' };
const query = dnsPacket.encode({ type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [question] });
const ednsQuery = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [question], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as dnsPacket.Answer] });
const answer = dnsPacket.encode({ type: 'response', id: 0x1234, flags: dnsPacket.AUTHORITATIVE_ANSWER, questions: [question], answers: [{ type: 'A', name: question.name, ttl: 30, data: '10.96.0.10' }] });
const DNS_SEEDS = [dnsSeed(query, answer), dnsSeed(ednsQuery, answer), dnsSeed(query, query)];

const TARGETS: Target[] = [
  { name: 'h1_fuzz', sources: ['fuzz/h1_fuzz.cc', 'src/h1/h1_parse.cc', 'src/h1/h1_headers.cc'], libs: [], seeds: H1_SEEDS },
  { name: 'dns_fuzz', sources: ['fuzz/dns_fuzz.cc', 'src/dns_fast.cc', 'src/netns_thread.cc'], libs: ['-lpthread'], seeds: DNS_SEEDS },
];

describe('native codecs under libFuzzer (ASan + UBSan)', () => {
  let dir = '';
  let failed = false;
  before(() => { dir = mkdtempSync(path.join(tmpdir(), 'weir-native-fuzz-')); });
  // A failure keeps the directory (the crashing input is in it); success removes it.
  after(() => { if (!failed) rmSync(dir, { recursive: true, force: true }); });

  for (const t of TARGETS) {
    test(`${t.name}: ${SECONDS} s, seed ${SEED}, no crash and no property violated`, { timeout: (SECONDS + 180) * 1000 }, async () => {
      const bin = path.join(dir, t.name);
      await run('clang++', [...FLAGS, ...t.sources.map((s) => path.join(NATIVE, s)), ...t.libs, '-o', bin], { maxBuffer: 16 << 20 });
      const corpus = path.join(dir, `${t.name}-corpus`);
      mkdirSync(corpus);
      t.seeds.forEach((s, i) => writeFileSync(path.join(corpus, `seed-${i}`), s));
      const args = [`-seed=${SEED}`, `-max_total_time=${SECONDS}`, '-print_final_stats=1', `-artifact_prefix=${dir}/${t.name}-`, corpus];
      try {
        const { stderr } = await run(bin, args, { maxBuffer: 64 << 20, timeout: (SECONDS + 120) * 1000 });
        const runs = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(stderr)?.[1] ?? 0);
        // A target that barely ran proved nothing: require real work (both do > 10k/s here).
        assert.ok(runs >= 1000 * Math.min(SECONDS, 5), `${t.name} executed only ${runs} inputs`);
        console.log(`${t.name}: ${runs} inputs in ${SECONDS} s, no failure`);
      } catch (e) {
        failed = true;
        const err = e as { stderr?: string; message: string };
        const tail = (err.stderr ?? '').split('\n').filter((l) => /property violated|re-parse|ERROR|SUMMARY|Base64|Test unit written/.test(l));
        assert.fail(`${t.name} failed (inputs kept in ${dir}; replay: ${bin} <artifact>):\n${tail.join('\n') || err.message}`);
      }
    });
  }
});
