// Counting (and, sparingly, logging) peers that send what their socket's
// schema does not allow: weir_agent_bad_peer_messages_total{socket}. Every
// agent socket reports here, so one alert covers a misbehaving proxy, a
// broken plugin or someone probing the node. The log is rate-limited per
// socket: a flood of garbage must not turn into a flood of log lines.
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';

export const BAD_PEER_METRIC = 'weir_agent_bad_peer_messages_total';
export type PeerSocket = 'cni.sock' | 'admin.sock' | 'proxy.sock' | 'metrics';

interface WarnLogger { warn(obj: object, msg: string): void }

const LOG_EVERY_MS = 10_000;

/** Returns the reporter for one socket; the counter is shared by every socket on the registry. */
export function badPeerReporter(registry: Registry, socket: PeerSocket, log?: WarnLogger): (reason: string) => void {
  const counter = (registry.getSingleMetric(BAD_PEER_METRIC) as Counter<'socket'> | undefined)
    ?? new Counter({ name: BAD_PEER_METRIC, help: 'Messages or connections refused because they did not match the socket\'s protocol, by socket', labelNames: ['socket'], registers: [registry] });
  let lastLog = 0;
  let suppressed = 0;
  return (reason: string) => {
    counter.inc({ socket });
    const now = Date.now();
    if (now - lastLog < LOG_EVERY_MS) { suppressed++; return; }
    log?.warn({ socket, reason: reason.slice(0, 300), suppressedSinceLast: suppressed }, 'bad message from a peer; refused');
    lastLog = now;
    suppressed = 0;
  };
}

/** An http.Server 'clientError' handler: bytes that are not HTTP are counted, answered 400, and that connection closed. */
export function onClientError(report: (reason: string) => void): (err: Error, socket: Duplex) => void {
  return (err, socket) => {
    report(`http: ${err.message}`);
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  };
}
