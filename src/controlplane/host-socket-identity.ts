// Who a proxy on the legacy host socket is: the kernel's peer pid
// (SO_PEERCRED, or sock_diag without the addon) mapped to a pod by the agent.
import { peerPid } from './peer-cred.js';
import { POD_SOCKET } from './protocol.js';
import type { ControlPlaneDeps, IdentifyConnection } from './server.js';

/**
 * Identity on the host socket: SO_PEERCRED pid → the agent's identifyPeer.
 * A pid of 0 means the peer is in a pid namespace the agent cannot see (the
 * agent runs without hostPID): it is refused, never mapped to a pod.
 */
export function identifyByPeerPid(identifyPeer: ControlPlaneDeps['identifyPeer']): IdentifyConnection {
  return async (sock) => {
    let peer: Awaited<ReturnType<typeof peerPid>>;
    try {
      peer = await peerPid(sock);
    } catch (err) {
      return { pid: 0, via: 'SO_PEERCRED', refusal: `cannot read peer credentials: ${String(err)}` };
    }
    if (!peer) {
      return { pid: 0, via: 'SO_PEERCRED', refusal: 'kernel reports no peer pid for this connection (the proxy is in a pid namespace the agent cannot see); connect to the pod socket ' + POD_SOCKET + ' instead' };
    }
    if (!identifyPeer) return { pid: peer.pid, via: peer.via, refusal: 'this agent does not identify proxies by pid' };
    const identity = await identifyPeer(peer.pid);
    return identity ? { pid: peer.pid, via: peer.via, identity } : { pid: peer.pid, via: peer.via, refusal: `pid ${peer.pid} does not belong to a pod this agent knows` };
  };
}
