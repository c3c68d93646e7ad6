// The destination a captured connection was addressed to before the kernel
// redirected it to the proxy. Preferred: SO_ORIGINAL_DST /
// IP6T_SO_ORIGINAL_DST through the native addon. Fallback while the addon
// is not built: the connection's conntrack entry in this netns
// (/proc/net/nf_conntrack), matched by the client's address and port and
// the listener port the reply tuple points at.
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { nativeAvailable, originalDst as nativeOriginalDst, socketFd } from '../native/addon.js';
import { canonicalIp } from './addr.js';

export interface OriginalDst { ip: string; port: number }

let useNative: boolean | undefined;

/** Which mechanism this process uses; decided once (the addon either loads or not). */
export async function loadNativeOriginalDst(): Promise<'native' | 'conntrack'> {
  useNative ??= nativeAvailable();
  return useNative ? 'native' : 'conntrack';
}

/** Accepts what the addon returns: {address|ip, port} or "ip:port" / "[ip]:port". */
function fromNative(v: unknown): OriginalDst | undefined {
  if (!v) return undefined;
  if (typeof v === 'string') {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(v);
    return m ? { ip: canonicalIp(m[1]), port: Number(m[2]) } : undefined;
  }
  const o = v as { address?: string; ip?: string; port?: number };
  const ip = o.address ?? o.ip;
  return ip && typeof o.port === 'number' ? { ip: canonicalIp(ip), port: o.port } : undefined;
}

const FIELD = /(src|dst|sport|dport)=(\S+)/g;

/** Parses /proc/net/nf_conntrack text for the entry whose reply goes back to client:port from listenerPort. */
export function findInConntrack(text: string, clientIp: string, clientPort: number, listenerPort: number): OriginalDst | undefined {
  const wantPort = String(clientPort);
  const wantListener = String(listenerPort);
  for (const line of text.split('\n')) {
    if (!line.includes(' tcp ') || !line.includes(`sport=${wantPort} `)) continue;
    const f: string[][] = [];
    for (const m of line.matchAll(FIELD)) f.push([m[1], m[2]]);
    // Order: original src dst sport dport, then reply src dst sport dport.
    if (f.length < 8) continue;
    const [oSrc, oDst, oSport, oDport, , , rSport, rDport] = f.map((x) => x[1]);
    if (oSport !== wantPort || rSport !== wantListener || rDport !== wantPort) continue;
    if (canonicalIp(oSrc) !== clientIp) continue;
    return { ip: canonicalIp(oDst), port: Number(oDport) };
  }
  return undefined;
}

export async function originalDst(sock: Socket, listenerPort: number): Promise<OriginalDst | undefined> {
  useNative ??= nativeAvailable();
  if (useNative) {
    try {
      return fromNative(nativeOriginalDst(socketFd(sock)));
    } catch {
      return undefined; // not redirected (e.g. a direct connection to the listener)
    }
  }
  const client = canonicalIp(sock.remoteAddress ?? '');
  const text = await readFile('/proc/net/nf_conntrack', 'utf8');
  const hit = findInConntrack(text, client, sock.remotePort ?? -1, listenerPort);
  return hit;
}
