// Request bodies stream through (never fully buffered); the first
// RETRY_BUFFER bytes are also kept so a request can be replayed to another
// endpoint when the first one failed before answering, as Envoy keeps a
// per-request retry buffer. A body larger than that is not retried once it
// started flowing. Also counts bytes and gRPC messages.
import type { Readable, Writable } from 'node:stream';

export const RETRY_BUFFER = 64 * 1024;

export class ReplayableBody {
  private chunks: Buffer[] = [];
  private kept = 0;
  private overflowed = false;
  private sink: Writable | undefined;
  private ended = false;
  bytes = 0;
  readonly messages = new GrpcMessageCounter();

  constructor(private readonly src: Readable) {
    src.on('data', (c: Buffer) => this.onData(c));
    src.on('end', () => { this.ended = true; this.sink?.end(); });
    src.pause();
  }

  /** Whether the whole body seen so far can still be replayed. */
  get replayable(): boolean {
    return !this.overflowed;
  }

  get complete(): boolean {
    return this.ended;
  }

  /** The whole body, once it ended and if it was small enough to keep (a mirror's copy). */
  wholeBody(): Buffer | undefined {
    return this.ended && !this.overflowed ? Buffer.concat(this.chunks) : undefined;
  }

  /** Send the body to this attempt: what was kept first, then the rest as it arrives. */
  pipeTo(sink: Writable): void {
    this.sink = sink;
    for (const c of this.chunks) sink.write(c);
    if (this.ended) { sink.end(); return; }
    sink.on('drain', () => { if (this.sink === sink) this.src.resume(); });
    this.src.resume();
  }

  /** The attempt failed: stop feeding it. */
  detach(): void {
    this.sink = undefined;
    this.src.pause();
  }

  private onData(c: Buffer): void {
    this.bytes += c.length;
    this.messages.push(c);
    if (!this.overflowed) {
      if (this.kept + c.length <= RETRY_BUFFER) { this.chunks.push(c); this.kept += c.length; } else { this.overflowed = true; this.chunks = []; }
    }
    const sink = this.sink;
    if (!sink) { this.src.pause(); return; }
    if (!sink.write(c)) this.src.pause();
  }
}

/** Counts length-prefixed gRPC messages (1 byte flag, 4 bytes length) across chunk boundaries. */
export class GrpcMessageCounter {
  count = 0;
  /** Bytes still to skip of the current message, or -n while collecting a 5-byte prefix (n bytes so far). */
  private need = 0;
  private prefix = Buffer.alloc(5);
  private have = 0;

  push(c: Buffer): void {
    let i = 0;
    while (i < c.length) {
      if (this.need > 0) {
        const take = Math.min(this.need, c.length - i);
        this.need -= take;
        i += take;
        continue;
      }
      const take = Math.min(5 - this.have, c.length - i);
      c.copy(this.prefix, this.have, i, i + take);
      this.have += take;
      i += take;
      if (this.have === 5) {
        this.count++;
        this.need = this.prefix.readUInt32BE(1);
        this.have = 0;
      }
    }
  }
}
