// Test harness of the native splice pump: a relay (listener -> upstream
// connect -> startSplicePump) between real loopback clients and servers,
// and the small socket helpers the pump tests share. Every socket and server
// it creates is registered in `cleanups` (the test file runs them in after()).
import net from 'node:net';
import { once } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import type { PumpResult } from '../../src/native/pump.js';
import { startSplicePump, type SplicePump, type SplicePumpOptions } from '../../src/native/splice-pump.js';

export const MiB = 1 << 20;

export interface Relay {
  port: number;
  server: net.Server;
  pumps: SplicePump[];
  /** Resolves with the next pump's result, in start order. */
  result(i: number): Promise<PumpResult>;
}

/** This process's open fds, and how many of them are pipes. */
export function fdCounts(): { total: number; pipes: number } {
  const fds = readdirSync('/proc/self/fd');
  let pipes = 0;
  for (const fd of fds) { try { if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('pipe:')) pipes++; } catch { /* closed meanwhile */ } }
  return { total: fds.length, pipes };
}

export function pumpHarness() {
  const cleanups: Array<() => void> = [];
  async function listen(server: net.Server): Promise<number> {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => server.close());
    return (server.address() as net.AddressInfo).port;
  }

  /** A server whose connections are handled by `onConnection`; returns its port. */
  async function serve(onConnection: (s: net.Socket) => void): Promise<{ port: number; server: net.Server }> {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => { /* asserted where expected */ });
      // Half-open accepted sockets that a test leaves open would keep their
      // pump (and this test process) alive after the suite.
      cleanups.push(() => s.destroy());
      onConnection(s);
    });
    return { port: await listen(server), server };
  }

  /** Echo server: half-close aware (pipe ends its write side at the read side's end). */
  function echoServer(): Promise<{ port: number; server: net.Server }> {
    return serve((s) => s.pipe(s));
  }

  /** A relay that accepts, connects to `targetPort` and hands both sockets to the splice pump. */
  async function spliceRelay(targetPort: number, opts: SplicePumpOptions = {}): Promise<Relay> {
    const pumps: SplicePump[] = [];
    const waiters: Array<() => void> = [];
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => {
      down.on('error', () => {});
      const up = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
      up.on('error', () => down.resetAndDestroy());
      up.once('connect', () => {
        pumps.push(startSplicePump(down, up, opts));
        waiters.splice(0).forEach((w) => w());
      });
    });
    const port = await listen(server);
    const result = async (i: number): Promise<PumpResult> => {
      while (pumps.length <= i) await new Promise<void>((r) => waiters.push(r));
      return pumps[i].done;
    };
    return { port, server, pumps, result };
  }

  async function connect(port: number): Promise<net.Socket> {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    cleanups.push(() => s.destroy());
    await once(s, 'connect');
    return s;
  }

  function collect(s: net.Socket): Promise<Buffer> {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.resume(); // readExactly may have left it paused
    return once(s, 'end').then(() => Buffer.concat(chunks));
  }

  function nextError(s: net.Socket): Promise<NodeJS.ErrnoException> {
    return new Promise((resolve) => s.once('error', resolve));
  }

  /** Read exactly n bytes, leaving the socket paused with any extra bytes unshifted. */
  function readExactly(s: net.Socket, n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const onEnd = () => { s.off('data', onData); reject(new Error(`stream ended after ${got} of ${n} bytes`)); };
      const onData = (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got < n) return;
        s.off('data', onData);
        s.off('end', onEnd);
        s.pause();
        const all = Buffer.concat(chunks);
        if (all.length > n) s.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      };
      s.on('data', onData);
      s.once('end', onEnd);
      s.resume();
    });
  }
  return { cleanups, listen, serve, echoServer, spliceRelay, connect, collect, nextError, readExactly };
}
