// Shared pieces of the fuzz suite (test/fuzz/*.test.ts): a seeded PRNG so a
// failure can be replayed (WEIR_FUZZ_SEED=<n>), budgets bounded in count AND
// time, mutators for bytes, JSON and HTTP, and the harness that throws
// mutants at a target while a well-formed peer keeps being served.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import net from 'node:net';

export const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 17);
/** Per-target bounds: at most this many mutants, and at most this long. */
export const MAX_CASES = Number(process.env.WEIR_FUZZ_CASES ?? 400);
export const MAX_MS = Number(process.env.WEIR_FUZZ_MS ?? 2500);

/** mulberry32: small, fast, deterministic. */
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  bytes(n: number): Buffer { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = this.int(256); return b; }
}

const WEIRD_STRINGS = ['', '\u0000', '../../etc/passwd', '%00', '//[', 'a'.repeat(5000), '\ud800', '999.1.1.1/24', '::/999', '{"a":', 'null', '-1', '1e309', '__proto__', 'constructor'];

/** A random JSON value: every type, odd numbers, deep nesting, prototype keys. */
export function randomJson(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 4 ? 6 : 9)) {
    case 0: return null;
    case 1: return r.pick([true, false]);
    case 2: return r.pick([0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, r.int(100000)]);
    case 3: return r.pick(WEIRD_STRINGS);
    case 4: return r.bytes(r.int(20)).toString('latin1');
    case 5: return [];
    case 6: return Array.from({ length: r.int(4) }, () => randomJson(r, depth + 1));
    case 7: { const o: Record<string, unknown> = {}; for (let i = r.int(4); i > 0; i--) o[r.pick(['type', 'version', 'versions', 'env', 'stdin', 'containerId', 'netns', 'ips', 'fields', 'msg', '__proto__', 'x'])] = randomJson(r, depth + 1); return o; }
    default: { let v: unknown = 1; for (let i = r.int(3000); i > 0; i--) v = [v]; return v; }
  }
}

/** A valid message with one field replaced, removed or retyped, or the whole thing truncated or noise. */
export function mutateJson(r: Rng, valid: Record<string, unknown>): string {
  const o: Record<string, unknown> = structuredClone(valid);
  const keys = Object.keys(o);
  switch (r.int(7)) {
    case 0: return JSON.stringify(randomJson(r));
    case 1: { o[r.pick(keys)] = randomJson(r); return JSON.stringify(o); }
    case 2: { delete o[r.pick(keys)]; return JSON.stringify(o); }
    case 3: { const t = JSON.stringify(o); return t.slice(0, r.int(t.length)); }
    case 4: return r.bytes(r.int(200)).toString('latin1');
    case 5: { const t = JSON.stringify(o); const i = r.int(t.length); return t.slice(0, i) + r.pick(['"', '{', ']', '\\', '\u0000', ',,']) + t.slice(i); }
    default: { for (const k of keys) if (r.int(2)) o[k] = randomJson(r); return JSON.stringify(o); }
  }
}

/** A hostile HTTP/1.1 request (raw bytes): bad targets, methods, headers, lengths, bodies. */
export function mutateHttp(r: Rng, paths: string[], body: () => string): Buffer {
  const method = r.pick(['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'G\u0000T', 'CONNECT', '']);
  const target = r.pick([...paths, ...paths.map((p) => p + '/' + r.pick(WEIRD_STRINGS)), '//[', '*', 'http://x/y', '/%ZZ', '/v1/pods/%2e%2e/%2e%2e/rules', '/' + 'a'.repeat(r.int(9000))]);
  const b = r.int(3) ? body() : r.bytes(r.int(2000)).toString('latin1');
  const len = r.pick([String(Buffer.byteLength(b)), '-1', '99999999', 'abc', String(Buffer.byteLength(b) + 10), '0']);
  const headers = [`Host: ${r.pick(['x', '', 'a'.repeat(100)])}`, `Content-Length: ${len}`];
  if (r.int(4) === 0) headers.push('Transfer-Encoding: chunked');
  if (r.int(6) === 0) headers.push(`X-Big: ${'b'.repeat(r.int(20000))}`);
  if (r.int(6) === 0) headers.push('Bad Header Line');
  const head = `${method} ${target} HTTP/1.${r.pick(['1', '0', '9'])}\r\n${headers.join('\r\n')}\r\n\r\n`;
  const whole = Buffer.from(head + b, 'latin1');
  return r.int(5) === 0 ? whole.subarray(0, r.int(whole.length)) : whole;
}

/** Writes one payload on a new connection, reads briefly, then closes (sometimes abruptly). */
export function throwAt(connect: () => net.Socket, payload: Buffer | string, r: Rng): Promise<void> {
  return new Promise((resolve) => {
    const s = connect();
    const done = (): void => { clearTimeout(t); s.destroy(); resolve(); };
    const t = setTimeout(done, 150 + r.int(150));
    s.on('error', done);
    s.on('close', done);
    s.on('connect', () => {
      const abrupt = r.int(4) === 0;
      s.write(payload, () => { if (abrupt) done(); else if (r.int(2)) s.end(); });
    });
    s.on('data', () => undefined);
  });
}

export interface FuzzTarget {
  name: string;
  /** A fresh connection to the target. */
  connect: () => net.Socket;
  /** One mutant. */
  mutant: (r: Rng) => Buffer | string;
  /** A well-formed exchange; throws if the target does not serve it correctly. */
  probe: () => Promise<void>;
}

export interface FuzzProcess { readonly alive: boolean; fdCount(): number; fdsSettle(baseline: number, timeoutMs?: number): Promise<number> }

/** A fuzzed server running as its own child process (the proxy, the CA, the injector). */
export class FuzzChild implements FuzzProcess {
  child?: ChildProcess;
  log = '';
  get alive(): boolean { return !!this.child && this.child.exitCode === null && this.child.signalCode === null; }
  fdCount(): number { return readdirSync(`/proc/${this.child!.pid}/fd`).length; }
  async fdsSettle(baseline: number, timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let n = this.fdCount();
    while (n > baseline && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 100)); n = this.fdCount(); }
    return n;
  }
}

/**
 * Throws up to MAX_CASES mutants (at most MAX_MS, 8 in flight) at `target`,
 * probing with a well-formed peer during and after. The process must stay
 * alive, keep serving, and return to its fd count from before.
 */
export async function fuzz(proc: FuzzProcess, target: FuzzTarget, seed = SEED): Promise<{ cases: number; probes: number }> {
  const r = new Rng(seed ^ [...target.name].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7));
  await target.probe();
  const baseline = proc.fdCount();
  const started = Date.now();
  let cases = 0;
  let probes = 0;
  let probing = true;
  const prober = (async () => {
    while (probing) {
      await target.probe();
      probes++;
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  try {
    const workers = Array.from({ length: 8 }, async () => {
      while (cases < MAX_CASES && Date.now() - started < MAX_MS) {
        cases++;
        await throwAt(target.connect, target.mutant(r), r);
      }
    });
    await Promise.all(workers);
  } finally {
    probing = false;
    await prober.catch((e: Error) => { throw new Error(`${target.name}: a well-formed peer was not served during the fuzzing: ${e.message}`); });
  }
  assert.ok(proc.alive, `${target.name}: the process died`);
  await target.probe();
  const after = await proc.fdsSettle(baseline);
  assert.ok(after <= baseline, `${target.name}: fd count ${after}, was ${baseline} before the fuzzing`);
  return { cases, probes };
}
