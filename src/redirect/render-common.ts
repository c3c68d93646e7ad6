// Checks every renderer makes before emitting rules.
import { FieldError } from '../common/errors.js';
import { ANNOTATIONS } from './annotations.js';
import type { RedirectPlan } from './types.js';

/** TPROXY is parsed into the plan but not rendered yet: refuse loudly rather than program REDIRECT instead. */
export function assertRenderable(plan: RedirectPlan, renderer: string): void {
  if (plan.mode !== 'REDIRECT') {
    throw new FieldError(ANNOTATIONS.interceptionMode, `${plan.mode} is not supported yet by the ${renderer} renderer (use REDIRECT)`, plan.mode);
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
