// Fuzz: the two HTTPS servers other components talk to — the mesh CA
// (`weir ca`, :15012, reached by every node agent) and the sidecar injector
// (`weir injector`, reached by kube-apiserver) — each run as its own process,
// as the manifests run them. Hostile bytes arrive both inside TLS (mutated
// HTTP requests and JSON bodies) and as raw bytes at the TLS port (garbage,
// truncated or bogus ClientHellos). Seeded and bounded (fuzz-support.ts). For
// each: the process never dies, a well-formed client is served during and
// after, and the fd count returns to where it was.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { TestApiServer } from '../support/apiserver.js';
import { weirSpawn } from '../support/cli.js';
import { createWorkloadCsr } from '../../src/ca/csr.js';
import { fuzz, mutateHttp, mutateJson, FuzzChild, MAX_CASES, MAX_MS, type Rng } from './fuzz-support.js';

class ServerChild extends FuzzChild {
  port = 0;

  /** Starts the process and waits for its "listening" line, whose `port` field says where. */
  async start(args: string[], ready: RegExp): Promise<void> {
    this.child = await weirSpawn(args);
    const keep = (c: Buffer): void => { this.log += c.toString(); };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    const deadline = Date.now() + 40_000;
    for (;;) {
      const line = this.log.split('\n').find((l) => ready.test(l));
      if (line) { this.port = (JSON.parse(line) as { port: number }).port; return; }
      if (Date.now() > deadline || !this.alive) throw new Error(`${args[0]} did not start:\n${this.log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A well-formed HTTPS exchange: `path` answers `want`. */
function httpsGet(port: number, p: string, want: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: p, rejectUnauthorized: false, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === want ? resolve() : reject(new Error(`${p}: ${res.statusCode}, want ${want}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${p}: no answer within 5 s`)));
    req.on('error', reject);
  });
}

const tlsConnect = (port: number) => () => tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' });

/** Raw bytes at a TLS port: garbage, or a ClientHello-looking record with a mangled body or length. */
function rawTlsMutant(r: Rng): Buffer {
  if (r.int(2)) return r.bytes(r.int(3000));
  const body = r.bytes(r.int(600));
  const record = Buffer.concat([Buffer.from([0x16, 0x03, r.int(5), 0, 0, 0x01, 0, 0, 0, 0x03, 0x03]), body]);
  record.writeUInt16BE(r.int(3) ? record.length - 5 : r.int(65536), 3);
  return record.subarray(0, r.int(record.length + 1));
}

function admissionReview(): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: { uid: 'u1', kind: { group: '', version: 'v1', kind: 'Pod' }, namespace: 'shop', operation: 'CREATE', object: { metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'x' }] } } },
  };
}

/** A real CSR for a real pod (made in before()): mutants start from what an agent sends. */
let csrPem = '';
function csrRequest(): Record<string, unknown> {
  return { csr: csrPem, pod: { namespace: 'default', name: 'sleep' }, ttlSeconds: 3600 };
}

/** A hostile request line/headers, or a well-framed request carrying a hostile JSON body. */
function httpMutant(r: Rng, paths: string[], valid: () => Record<string, unknown>): Buffer {
  if (r.int(2)) return mutateHttp(r, paths, () => mutateJson(r, valid()));
  const body = mutateJson(r, valid());
  const auth = r.pick(['', 'Authorization: Bearer tok-a\r\n', 'Authorization: Bearer \r\n', `Authorization: ${'x'.repeat(r.int(9000))}\r\n`]);
  return Buffer.from(`POST ${r.pick(paths)} HTTP/1.1\r\nHost: localhost\r\n${auth}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, 'latin1');
}

describe('fuzz: the CA and injector HTTPS servers', { timeout: 180_000 }, () => {
  let api: TestApiServer;
  const dir = mkdtempSync(path.join(tmpdir(), 'wk-fuzz-servers-'));
  const ca = new ServerChild();
  const injector = new ServerChild();

  before(async () => {
    api = await TestApiServer.start();
    api.put({ kind: 'Pod', metadata: { namespace: 'default', name: 'sleep' }, spec: { nodeName: 'node-a', serviceAccountName: 'sleep', containers: [{ name: 'c', image: 'x' }] }, status: { phase: 'Running' } } as never);
    csrPem = (await createWorkloadCsr('spiffe://cluster.local/ns/default/sa/sleep')).csrPem;
    api.addToken('tok-a', { username: 'system:serviceaccount:weir-system:weir-agent' });
    await Promise.all([
      ca.start(['ca', '--kubeconfig', api.writeKubeconfig(dir), '--namespace', 'weir-system', '--listen', '127.0.0.1:0', '--dns-names', 'localhost'], /"msg":"weir ca serving"/),
      injector.start(['injector', '--no-kube', '--native-sidecars', 'false', '--port', '0', '--host', '127.0.0.1'], /"msg":"weir injector listening"/),
    ]);
  });
  after(async () => {
    for (const s of [ca, injector]) s.child?.kill('SIGKILL');
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`at most ${MAX_CASES} cases / ${MAX_MS} ms per target`, () => { assert.ok(MAX_CASES > 0); });

  const targets: [string, ServerChild, string[], () => Record<string, unknown>, string][] = [
    ['CA (:15012)', ca, ['/v1/certificates', '/v1/roots', '/healthz/ready', '/metrics'], csrRequest, '/healthz/ready'],
    ['injector', injector, ['/inject', '/healthz', '/readyz', '/stats'], admissionReview, '/healthz'],
  ];
  for (const [name, server, paths, valid, probePath] of targets) {
    const probe = (): Promise<void> => httpsGet(server.port, probePath, 200);
    test(`${name}: HTTP requests and JSON bodies inside TLS`, async (t) => {
      const res = await fuzz(server, { name: `${name} https`, connect: tlsConnect(server.port), mutant: (r) => httpMutant(r, paths, valid), probe });
      t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
    });
    test(`${name}: raw bytes and bogus ClientHellos at the TLS port`, async (t) => {
      const res = await fuzz(server, { name: `${name} raw`, connect: () => net.connect(server.port, '127.0.0.1'), mutant: rawTlsMutant, probe });
      t.diagnostic(`cases ${res.cases}, probes ${res.probes}`);
    });
  }
});
