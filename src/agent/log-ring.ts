// The last N log lines of the agent, kept in memory for `weir logs` (the
// admin socket serves them), fed as a second pino destination.
import { Writable } from 'node:stream';

export class LogRing extends Writable {
  private readonly lines: string[] = [];
  private partial = '';
  /** Lines ever written: the sequence number after the newest line (for `weir logs -f`). */
  total = 0;

  constructor(private readonly capacity = 2000) {
    super();
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const text = this.partial + chunk.toString();
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    for (const p of parts) {
      if (!p) continue;
      this.lines.push(p);
      this.total++;
      if (this.lines.length > this.capacity) this.lines.shift();
    }
    cb();
  }

  tail(n: number): string[] {
    return n <= 0 ? [] : this.lines.slice(-n);
  }

  /** Lines written after sequence number `seq` (those still held), and the sequence to ask from next. */
  since(seq: number): { lines: string[]; next: number } {
    const missed = Math.max(0, this.total - seq);
    return { lines: missed === 0 ? [] : this.lines.slice(-Math.min(missed, this.lines.length)), next: this.total };
  }
}
