// TPROXY's policy routing around a rules backend (nftables or iptables):
// apply, read, verify and remove cover the `ip rule` / `ip route` pieces as
// well as the rules, so a TPROXY pod is programmed whole or not at all.
//
// Order, and what a failure leaves:
// - apply (TPROXY): routing first, then the rules. If either fails and the
//   netns had no weir routing before, the routing added is taken away
//   again; old rules are left as they were (the rules backends replace
//   atomically).
// - apply (REDIRECT) over a former TPROXY netns, and remove: rules first,
//   then routing. A rule/route left behind without rules only ever matches
//   mark 1337, which nothing sets once the TPROXY rules are gone.
// Routing is only read or written where TPROXY is, or may be, programmed
// (`hasTproxy`, in process for nftables and iptables-nft), so REDIRECT pods
// keep their fast path with no process spawned.
import type { CaptureBackend, NetnsPath, ProgrammedState, SandboxTarget, VerifyResult } from './backend-types.js';
import { applyPolicyRouting, expectedPolicyRouting, readPolicyRouting, removePolicyRouting, type PolicyRoute } from './policy-routing.js';
import { diffListings } from './iptables-backend.js';
import { TPROXY_MARK, TPROXY_ROUTE_TABLE } from '../redirect/plan.js';
import type { RedirectPlan } from '../redirect/types.js';

/** The mark/table weir uses when the plan at hand does not say (remove, REDIRECT). */
const DEFAULT_ROUTE: PolicyRoute = { mark: TPROXY_MARK, routeTable: TPROXY_ROUTE_TABLE };

export interface TproxyBackendOptions {
  /** True when the netns has (or may have) weir's TPROXY rules; false only when certainly not. */
  hasTproxy(netns: NetnsPath): Promise<boolean>;
}

export class TproxyRoutingBackend implements CaptureBackend {
  readonly name: CaptureBackend['name'];

  constructor(private readonly rules: CaptureBackend, private readonly opts: TproxyBackendOptions) {
    this.name = rules.name;
  }

  async apply(target: SandboxTarget, plan: RedirectPlan): Promise<void> {
    const netns = target.netnsPath;
    if (!plan.tproxy) {
      const had = await this.opts.hasTproxy(netns);
      await this.rules.apply(target, plan);
      if (had) await removePolicyRouting(netns, DEFAULT_ROUTE);
      return;
    }
    // Exactly what was there (not the cheap "may have"): only routing this
    // apply added is taken back on failure.
    const had = (await readPolicyRouting(netns, plan.tproxy)).length > 0;
    const undo = async (): Promise<void> => { if (!had) await removePolicyRouting(netns, plan.tproxy!).catch(() => undefined); };
    try {
      await applyPolicyRouting(netns, plan.tproxy);
      await this.rules.apply(target, plan);
    } catch (e) {
      await undo();
      throw e;
    }
  }

  async read(target: SandboxTarget): Promise<ProgrammedState> {
    const netns = target.netnsPath;
    const state = await this.rules.read(target);
    if (!(await this.opts.hasTproxy(netns))) return state;
    const routing = await readPolicyRouting(netns, DEFAULT_ROUTE);
    if (routing.length === 0) return state;
    const rulesText = state.listing === '' || state.listing.endsWith('\n') ? state.listing : `${state.listing}\n`;
    return { ...state, present: true, listing: rulesText + routing.join('\n') };
  }

  async verify(target: SandboxTarget, plan: RedirectPlan): Promise<VerifyResult> {
    const netns = target.netnsPath;
    const result = await this.rules.verify(target, plan);
    if (!plan.tproxy && !(await this.opts.hasTproxy(netns))) return result;
    const route = plan.tproxy ?? DEFAULT_ROUTE;
    const expected = plan.tproxy ? expectedPolicyRouting(route) : [];
    const differences = [...result.differences, ...diffListings(expected, await readPolicyRouting(netns, route))];
    return { ok: differences.length === 0, differences };
  }

  async remove(target: SandboxTarget): Promise<void> {
    const netns = target.netnsPath;
    const had = await this.opts.hasTproxy(netns);
    await this.rules.remove(target);
    if (had) await removePolicyRouting(netns, DEFAULT_ROUTE);
  }
}
