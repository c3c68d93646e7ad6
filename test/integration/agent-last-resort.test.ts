// The agent's last-resort policy (src/agent/last-resort.ts, docs/architecture.md):
// an unhandled rejection is logged and counted and the agent keeps serving;
// an uncaught exception is logged at fatal and the agent exits 70 at once;
// the restarted agent finishes the ADD that was in flight. Faults are
// injected with the test-only WEIR_TEST_CRASH_AT hook.
import { sandboxAt } from '../../src/netns/backend-types.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Netns, skipUnlessRoot } from '../support/netns.js';
import { AgentChild, RELAY, meshPod } from '../support/agent-child.js';
import { confText, runRelay, sandboxEnv } from '../support/relay.js';
import { getBackend } from '../../src/netns/backends.js';
import { buildPlan } from '../../src/redirect/plan.js';
import type { Pod } from '../../src/kube/pod-types.js';
import type { StoredSandbox } from '../../src/agent/sandbox-store.js';

describe('last-resort policy', { skip: skipUnlessRoot() || (!existsSync(RELAY) && 'dist/weir-cni not built (npm run build)'), timeout: 240_000 }, () => {
  let agent: AgentChild;
  const nets: Netns[] = [];
  const pods = ['lr-a', 'lr-b', 'lr-c'].map((n) => meshPod(n, 'default', 'wk-lr-node'));
  before(async () => {
    agent = await AgentChild.create('wk-lr-node');
    for (const p of pods) agent.api.put(p);
  });
  after(async () => {
    await agent?.stop();
    for (const ns of nets) ns.destroy();
  });

  test('unhandled rejection: logged with its stack, counted, the agent keeps serving', async () => {
    await agent.start({ controlPlane: false, env: { WEIR_TEST_CRASH_AT: 'add:after-record:reject' } });
    const a = Netns.create('wklr');
    const b = Netns.create('wklr');
    nets.push(a, b);
    assert.equal((await runRelay(sandboxEnv('ADD', 'wklr1', a.path, 'default', 'lr-a'), confText(agent.cniSocket))).code, 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(agent.alive, agent.log.slice(-2000));
    assert.match(agent.log, /"msg":"unhandled promise rejection \(agent keeps running\)"/);
    assert.match(agent.log, /test crash point add:after-record: unhandled rejection/);
    const text = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    assert.match(text, /weir_agent_unexpected_errors_total\{kind="unhandled-rejection"\} 1/);
    assert.equal((await runRelay(sandboxEnv('ADD', 'wklr2', b.path, 'default', 'lr-b'), confText(agent.cniSocket))).code, 0, 'still serving');
    await agent.kill();
  });

  test('uncaught exception: fatal log, exit 70 at once; the restarted agent finishes the ADD in flight', async () => {
    await agent.start({ controlPlane: false, env: { WEIR_TEST_CRASH_AT: 'add:after-intent:throw' } });
    const c = Netns.create('wklr');
    nets.push(c);
    const add = await runRelay(sandboxEnv('ADD', 'wklr3', c.path, 'default', 'lr-c'), confText(agent.cniSocket));
    const exit = await agent.waitExit();
    assert.equal(exit.code, 70, agent.log.slice(-2000));
    assert.match(agent.log, /"level":"fatal".*"msg":"uncaught exception: exiting for a clean restart"/);
    assert.ok(add.code === 0 || add.json?.code === 11, add.stdout);
    await agent.start({ controlPlane: false });
    const backend = getBackend('nftables');
    const v = await backend.verify(sandboxAt(c.path), buildPlan(pods[2] as unknown as Pod));
    const recs = (JSON.parse(readFileSync(path.join(agent.runDir, 'sandboxes.json'), 'utf8')) as { sandboxes: StoredSandbox[] }).sandboxes;
    const rec = recs.find((r) => r.containerId === 'wklr3');
    assert.ok(v.ok && rec?.captured && !rec.pending, `finished: ${JSON.stringify(rec)} ${v.differences.join('\n')}`);
    assert.equal((await runRelay(sandboxEnv('CHECK', 'wklr3', c.path, 'default', 'lr-c'), confText(agent.cniSocket))).code, 0);
  });
});
