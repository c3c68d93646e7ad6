// Every socket a suite opens — the client ends it dials and the server ends
// its listeners accept — so its after hook can destroy them all. A test that
// fails between connect and destroy otherwise leaves a socket open, and an
// open socket (a listener's accepted end included: server.close() waits for
// those) keeps the test process alive after the suite.
import type net from 'node:net';

export class OpenSockets {
  private readonly all = new Set<net.Socket>();

  /** Tracks `s` until it closes; returns it. */
  add<T extends net.Socket>(s: T): T {
    this.all.add(s);
    s.once('close', () => this.all.delete(s));
    return s;
  }

  /** Tracks every connection `server` accepts; returns it. */
  serve<T extends net.Server>(server: T): T {
    server.on('connection', (s: net.Socket) => this.add(s));
    return server;
  }

  get size(): number {
    return this.all.size;
  }

  /** Destroys every tracked socket still open. */
  destroyAll(): void {
    for (const s of this.all) s.destroy();
    this.all.clear();
  }
}
