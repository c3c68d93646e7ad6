// TPROXY's two socket needs, through the native addon (Node can set neither
// IP_TRANSPARENT nor SO_MARK): the inbound listener that TPROXY delivers to,
// and the hand-off connection to the app that keeps the client's address.
import { Socket } from 'node:net';
import { socketInNetns, type NativeError } from '../native/addon.js';
import { familyOf } from './addr.js';
import { ConnectError } from './relay.js';

/**
 * A dual-stack IP_TRANSPARENT listening fd on [::]:port, for
 * `server.listen({ fd })`. TPROXY only delivers to transparent sockets.
 */
export function transparentListenFd(port: number, backlog: number): Promise<number> {
  return socketInNetns(null, { kind: 'tcp-listen', family: 6, address: '::', port, backlog, transparent: true });
}

export interface TransparentConnect {
  /** The app: the connection's original destination (the pod IP; loopback would be a martian from a foreign source). */
  ip: string;
  port: number;
  /** The client, as the app must see it. */
  sourceIp: string;
  sourcePort: number;
  mark: number;
  timeoutMs: number;
}

/**
 * Connect to the app from the client's address. The mark lets the
 * connection pass the capture rules, and the app's replies (addressed to
 * the client) are routed back to this socket by the policy route.
 */
export async function connectTransparent(o: TransparentConnect): Promise<Socket> {
  let fd: number;
  try {
    fd = await socketInNetns(null, {
      kind: 'tcp-connect', family: familyOf(o.ip), address: o.ip, port: o.port, timeoutMs: o.timeoutMs,
      transparent: true, mark: o.mark, sourceAddress: o.sourceIp, avoidSourcePort: o.sourcePort,
    });
  } catch (e) {
    const err = e as NativeError;
    throw new ConnectError(err.code ?? 'ECONNFAILED', err.message);
  }
  return new Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
}
