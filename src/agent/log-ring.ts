// The last N log lines of the agent, kept in memory for `weir logs` (the
// admin socket serves them), fed as a second pino destination.
import { Writable } from 'node:stream';

export class LogRing extends Writable {
  private readonly lines: string[] = [];
  private partial = '';

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
      if (this.lines.length > this.capacity) this.lines.shift();
    }
    cb();
  }

  tail(n: number): string[] {
    return this.lines.slice(-Math.max(0, n));
  }
}
