// A proxy that speaks control plane v2 exactly as `weir proxy` does on the
// wire (hello [2], every push's envelope and items checked with the proxy's
// own checks, ack or nack naming kind/version/nonce, deltas only from the
// version it holds) but keeps only the registry's keys and one watched
// service, not the applied config: the control-plane bench runs 100 proxies
// of a 10k-service mesh with it where 100 full proxy states (~100+ MB each,
// unscoped) do not fit a shared machine. The bench says how many are these.
import net from 'node:net';
import { encode, LineDecoder } from '../../src/controlplane/protocol.js';
import { checkItems } from '../../src/controlplane/v2/item-schema.js';
import type { Kind } from '../../src/controlplane/v2/kinds.js';
import type { RegistryService } from '../../src/controlplane/types.js';
import { checkPush } from '../../src/proxy/v2-applier.js';

export class WireProxy {
  private sock?: net.Socket;
  private readonly held = new Map<Kind, number>();
  readonly keys = new Set<string>();
  /** The watched service (by key), as last pushed. */
  watched?: RegistryService;
  pushes = 0;
  nacks = 0;

  constructor(private readonly socketPath: string, private readonly watch: string) {}

  /** Kinds that have arrived at least once (the bench's "holds its whole config"). */
  kindsHeld(): number { return this.held.size; }

  start(): void {
    const sock = net.connect(this.socketPath);
    this.sock = sock;
    const dec = new LineDecoder();
    sock.on('connect', () => sock.write(encode({ type: 'hello', versions: [2] })));
    sock.on('error', () => {});
    sock.on('data', (chunk: Buffer) => {
      for (const raw of dec.push(chunk) as Record<string, unknown>[]) if (raw.type === 'push') this.onPush(raw);
    });
  }

  private onPush(raw: Record<string, unknown>): void {
    this.pushes++;
    const { msg, errors } = checkPush(raw);
    if (!msg) { this.nack(raw, errors); return; }
    const have = this.held.get(msg.kind);
    if (!msg.full && have !== msg.fromVersion) { this.nack(raw, [{ name: '', field: 'push.fromVersion', message: `holds ${have ?? 'none'}` }]); return; }
    const itemErrors = checkItems(msg.kind, msg.upserts);
    if (itemErrors.length) { this.nack(raw, itemErrors); return; }
    if (msg.kind === 'Registry') {
      if (msg.full) this.keys.clear();
      for (const k of msg.deletes) { this.keys.delete(k); if (k === this.watch) this.watched = undefined; }
      for (const s of msg.upserts as RegistryService[]) {
        const k = `${s.namespace}/${s.name}`;
        this.keys.add(k);
        if (k === this.watch) this.watched = s;
      }
    }
    this.held.set(msg.kind, msg.version);
    this.sock!.write(encode({ type: 'ack', kind: msg.kind, version: msg.version, nonce: msg.nonce }));
  }

  private nack(raw: Record<string, unknown>, errors: { name: string; field: string; message: string }[]): void {
    this.nacks++;
    this.sock!.write(encode({ type: 'nack', kind: raw.kind as Kind, version: raw.version as number, nonce: String(raw.nonce), errors: errors.slice(0, 10) }));
  }

  stop(): void { this.sock?.destroy(); }
}
