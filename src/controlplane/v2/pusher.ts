// One v2 proxy connection, agent side: which version of each kind was sent
// and acked, what is still unanswered (by nonce), and the push that brings
// the proxy to the current version of a kind — a delta from what it holds,
// or the whole kind on the first push, after a NACK, or when the history no
// longer covers it. Flow control as in v1: above the high-water mark nothing
// more is queued, and on drain one push per kind covers everything since.
import type { Socket } from 'node:net';
import type { AckMsg, NackError, NackMsg } from '../protocol.js';
import { KINDS, type Kind } from './kinds.js';
import type { KindFeed } from './versioned-kind.js';
import { fullBody } from './full-body.js';

const HIGH_WATER = 4 * 1024 * 1024;

/**
 * Bytes written to every proxy of one agent and not yet taken by the kernel.
 * Above `limit`, whole-kind pushes wait (deltas never do: they are small and
 * latency matters): 100 proxies connecting at once to a 10k-service mesh
 * would otherwise hold ~20 MB each in the agent's memory at the same time.
 */
export class PushBudget {
  private inFlight = 0;
  /** Waiters and their deadline timers: a proxy that stopped reading must not stall everyone else's first push. */
  private readonly waiting = new Map<(forced: boolean) => void, NodeJS.Timeout>();
  constructor(readonly limit = 32 * 1024 * 1024, private readonly maxWaitMs = 2000) {}
  /** Encoded bodies several sockets are writing at once (full-body.ts): counted once, while any holds them. */
  private readonly shared = new Map<Buffer, number>();
  full(): boolean { return this.inFlight >= this.limit; }
  take(n: number): void { this.inFlight += n; }
  takeShared(body: Buffer): void {
    const refs = this.shared.get(body) ?? 0;
    this.shared.set(body, refs + 1);
    if (refs === 0) this.take(body.length);
  }
  giveShared(body: Buffer): void {
    const refs = (this.shared.get(body) ?? 1) - 1;
    if (refs > 0) { this.shared.set(body, refs); return; }
    this.shared.delete(body);
    this.give(body.length);
  }
  give(n: number): void {
    this.inFlight -= n;
    for (const w of [...this.waiting.keys()]) {
      if (this.full()) return;
      this.run(w, false);
    }
  }
  /** `w(true)`: the wait timed out; the waiter then pushes regardless. */
  wait(w: (forced: boolean) => void): void {
    if (this.waiting.has(w)) return;
    this.waiting.set(w, setTimeout(() => this.run(w, true), this.maxWaitMs));
  }
  forget(w: (forced: boolean) => void): void { clearTimeout(this.waiting.get(w)); this.waiting.delete(w); }
  private run(w: (forced: boolean) => void, forced: boolean): void {
    if (!this.waiting.has(w)) return;
    this.forget(w);
    w(forced);
  }
}

export interface LastNack { kind: Kind; version: number; errors: NackError[]; at: string }

interface KindState {
  /** The version the proxy will hold once everything sent is applied; -1 = nothing sent. */
  sent: number;
  acked: number;
  /** The next push must be whole (first push, after a NACK). */
  needFull: boolean;
  /** The last version the proxy rejected: never resent (it would fail the same way). */
  rejected: number;
  pending: Map<string, { version: number; seq: number; full: boolean }>;
  pushes: number;
  nacks: number;
}

export interface PusherEvents {
  /** A kind reached `version` at the proxy. */
  onAck(kind: Kind, version: number): void;
  onNack(nack: LastNack): void;
  onPush(kind: Kind, bytes: number): void;
}

export class V2Pusher {
  private readonly states = new Map<Kind, KindState>();
  private seq = 0;
  private blocked = false;
  lastNack?: LastNack;

  /** Set when the budget wait timed out: this catch-up round does not wait again. */
  private budgetWaived = false;
  private readonly resumeAfterBudget = (forced: boolean): void => {
    this.blocked = false;
    this.budgetWaived = forced;
    this.catchUp();
    this.budgetWaived = false;
  };

  constructor(private readonly sock: Socket, private readonly sessionId: number, private readonly feed: (kind: Kind) => KindFeed | undefined, private readonly events: PusherEvents, private readonly budget = new PushBudget()) {
    for (const k of KINDS) this.states.set(k, { sent: -1, acked: -1, needFull: true, rejected: -1, pending: new Map(), pushes: 0, nacks: 0 });
    sock.once('close', () => budget.forget(this.resumeAfterBudget));
  }

  /** The proxy resumed holding these versions (same epoch): deltas from there, when the feeds still cover them. */
  resume(versions: Partial<Record<Kind, number>>): Kind[] {
    const resumed: Kind[] = [];
    for (const [kind, v] of Object.entries(versions) as [Kind, number][]) {
      const f = this.feed(kind);
      if (v === undefined || v < 0 || !f || !f.since(v)) continue;
      const st = this.states.get(kind)!;
      st.sent = v;
      st.acked = v;
      st.needFull = false;
      resumed.push(kind);
    }
    return resumed;
  }

  /** The feeds of these kinds changed identity (the proxy moved to another view): their next pushes are whole. */
  restart(kinds: readonly Kind[]): void {
    for (const k of kinds) { const st = this.states.get(k)!; st.needFull = true; st.rejected = -1; }
  }

  sentVersion(kind: Kind): number { return this.states.get(kind)!.sent; }
  ackedVersion(kind: Kind): number { return this.states.get(kind)!.acked; }

  /** Push every kind (in dependency order) the proxy is behind on. */
  catchUp(kinds: readonly Kind[] = KINDS): void {
    for (const k of KINDS) {
      if (this.blocked || this.sock.destroyed) return;
      if (kinds.includes(k)) this.pushKind(k);
    }
  }

  private pushKind(kind: Kind): void {
    const f = this.feed(kind);
    if (!f) return;
    const st = this.states.get(kind)!;
    if (f.version() === st.rejected) return;
    if (!st.needFull && st.sent === f.version()) return;
    const d = st.needFull || st.sent < 0 ? undefined : f.since(st.sent);
    if (!d && this.budget.full() && !this.budgetWaived) {
      // Other proxies' whole pushes are still being written: this one waits its turn (and keeps its place for the other kinds).
      this.blocked = true;
      this.budget.wait(this.resumeAfterBudget);
      return;
    }
    const nonce = `${this.sessionId}.${++this.seq}`;
    let version: number;
    let bytes: number;
    // Items are JSON text already (feeds keep them encoded): the line is assembled, not re-encoded per proxy.
    if (d) {
      version = d.version;
      const line = `{"type":"push","kind":"${kind}","version":${version},"nonce":"${nonce}","fromVersion":${d.fromVersion},"upserts":[${d.upserts.join(',')}],"deletes":${JSON.stringify(d.deletes)}}\n`;
      bytes = Buffer.byteLength(line);
      this.write(line, bytes);
    } else {
      const full = fullBody(f);
      version = full.version;
      const head = `{"type":"push","kind":"${kind}","version":${version},"nonce":"${nonce}","full":true,"upserts":`;
      const tail = ',"deletes":[]}\n';
      bytes = Buffer.byteLength(head) + full.bytes + tail.length;
      // The body's bytes are shared with other proxies' pushes (one copy in memory): the budget counts them once.
      const own = Buffer.byteLength(head) + tail.length + full.ownBytes;
      this.budget.take(own);
      this.budget.takeShared(full.shared);
      this.sock.cork();
      this.sock.write(head);
      for (const p of full.parts) this.sock.write(p);
      // The callback holds `full` (and so the encoded base it slices) until the kernel has every byte.
      this.sock.write(tail, () => { this.budget.give(own); this.budget.giveShared(full.shared); void full.keepAlive; });
      this.sock.uncork();
    }
    st.pending.set(nonce, { version, seq: this.seq, full: !d });
    st.sent = version;
    st.needFull = false;
    st.pushes++;
    this.events.onPush(kind, bytes);
    if (this.sock.writableLength > HIGH_WATER) {
      this.blocked = true;
      this.sock.once('drain', () => { this.blocked = false; this.catchUp(); });
    }
  }

  /** One write, counted against the agent-wide budget until the kernel has it (or the socket is gone). */
  private write(data: string | Buffer, bytes: number): void {
    this.budget.take(bytes);
    this.sock.write(data, () => this.budget.give(bytes));
  }

  /** An ack: returns a protocol error (unknown nonce, wrong version), or undefined. */
  ack(msg: AckMsg & { kind: Kind; nonce: string }): string | undefined {
    const st = this.states.get(msg.kind)!;
    const p = st.pending.get(msg.nonce);
    if (!p) return `ack.nonce ${JSON.stringify(msg.nonce)} does not name an unanswered ${msg.kind} push`;
    if (p.version !== msg.version) return `ack.version ${msg.version} does not match the ${msg.kind} push ${msg.nonce} (version ${p.version})`;
    st.pending.delete(msg.nonce);
    if (msg.version > st.acked) st.acked = msg.version;
    this.events.onAck(msg.kind, st.acked);
    return undefined;
  }

  /**
   * A NACK: the proxy kept its last good version of the kind. Unless a later
   * whole push is already on its way, the next push is whole; it goes now if
   * the feed has moved past the rejected version (a fix may heal it), else
   * on the next change (resending the same content would fail the same way).
   */
  nack(msg: NackMsg): string | undefined {
    const st = this.states.get(msg.kind)!;
    const p = st.pending.get(msg.nonce);
    if (!p) return `nack.nonce ${JSON.stringify(msg.nonce)} does not name an unanswered ${msg.kind} push`;
    if (p.version !== msg.version) return `nack.version ${msg.version} does not match the ${msg.kind} push ${msg.nonce} (version ${p.version})`;
    st.pending.delete(msg.nonce);
    st.nacks++;
    this.lastNack = { kind: msg.kind, version: msg.version, errors: msg.errors, at: new Date().toISOString() };
    this.events.onNack(this.lastNack);
    const healing = [...st.pending.values()].some((q) => q.full && q.seq > p.seq);
    if (healing) return undefined;
    st.rejected = Math.max(st.rejected, msg.version);
    st.needFull = true;
    const f = this.feed(msg.kind);
    if (f && f.version() > msg.version) this.pushKind(msg.kind);
    return undefined;
  }

  stats(): Record<string, { sent: number; acked: number; pushes: number; nacks: number }> {
    const out: Record<string, { sent: number; acked: number; pushes: number; nacks: number }> = {};
    for (const [k, st] of this.states) out[k] = { sent: st.sent, acked: st.acked, pushes: st.pushes, nacks: st.nacks };
    return out;
  }
}
