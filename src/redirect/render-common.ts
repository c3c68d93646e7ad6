// Checks every renderer makes before emitting rules.
import { FieldError } from '../common/errors.js';
import { ANNOTATIONS } from './annotations.js';
import type { RedirectPlan } from './types.js';

/**
 * A plan built elsewhere (a socket message, a hand-written file) must say
 * TPROXY and carry its mark/table together, or the renderer would program
 * half of it: refuse loudly instead.
 */
export function assertRenderable(plan: RedirectPlan, renderer: string): void {
  if (plan.mode !== 'REDIRECT' && plan.mode !== 'TPROXY') {
    throw new FieldError(ANNOTATIONS.interceptionMode, `the ${renderer} renderer supports REDIRECT and TPROXY`, String(plan.mode));
  }
  if ((plan.mode === 'TPROXY') !== (plan.tproxy !== undefined)) {
    throw new FieldError('plan.tproxy', `must be present exactly when mode is TPROXY (mode ${plan.mode})`);
  }
  if (plan.untrackLoopback) {
    // App → 127.0.0.1:53 over lo is NATed to the DNS proxy; TPROXY marks lo hand-offs in conntrack.
    if (plan.dns.enabled) throw new FieldError('plan.untrackLoopback', 'needs DNS capture off (lo traffic to 127.0.0.1:53 is NATed to the DNS proxy)');
    if (plan.tproxy) throw new FieldError('plan.untrackLoopback', 'is for REDIRECT plans only (TPROXY keeps conntrack marks on lo)');
  }
  if (plan.tproxy) {
    const { mark, routeTable } = plan.tproxy;
    if (!Number.isInteger(mark) || mark < 1 || mark > 0xffff_ffff) throw new FieldError('plan.tproxy.mark', 'must be an integer 1-4294967295', String(mark));
    // 253-255 are the kernel's default/main/local tables.
    if (!Number.isInteger(routeTable) || routeTable < 1 || routeTable > 252) throw new FieldError('plan.tproxy.routeTable', 'must be an integer 1-252', String(routeTable));
  }
}

/** Loopback addresses of the proxy's inbound passthrough and of localhost, per family. */
export const INBOUND_PASSTHROUGH_SOURCE = { 4: '127.0.0.6', 6: '::6' } as const;
export const LOCALHOST = { 4: '127.0.0.1', 6: '::1' } as const;
/** Tunnel port: the proxy's own traffic to it is never redirected back to 15006. */
export const TUNNEL_PORT = 15008;
/** Merged metrics: scraped through, never captured outbound. */
export const METRICS_PORT = 15020;
/** conntrack zones for DNS (see render-nftables.ts for the reasoning). */
export const DNS_ZONE_PROXY_UPSTREAM = 1;
export const DNS_ZONE_APP_TO_PROXY = 2;
