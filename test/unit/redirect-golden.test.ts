// Golden rulesets: every good pod fixture rendered for both backends, compared
// byte for byte with test/golden/. UPDATE_GOLDEN=1 rewrites them (review the
// diff). As root, each golden script is also checked by the kernel itself in
// a throwaway netns, so a golden file can never hold a ruleset nft or
// iptables-restore would reject.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlan } from '../../src/redirect/plan.js';
import { readPodFile } from '../../src/redirect/pod-file.js';
import { renderIptables } from '../../src/redirect/render-iptables.js';
import { renderNftables } from '../../src/redirect/render-nftables.js';
import { skipUnlessRoot } from '../support/netns.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(root, 'fixtures', 'pods');
const golden = path.join(root, 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

const pods = readdirSync(fixtures).filter((f) => f.endsWith('.yaml') && !f.startsWith('bad-')).sort();

function rendered(file: string): { nft: string; iptables: string; v4: string; v6: string } {
  const plan = buildPlan(readPodFile(path.join(fixtures, file)));
  const ipt = renderIptables(plan);
  return { nft: renderNftables(plan), iptables: `# IPv4\n${ipt.v4}# IPv6\n${ipt.v6}`, v4: ipt.v4, v6: ipt.v6 };
}

test('there are golden fixtures to compare', () => {
  assert.ok(pods.length >= 6, `only ${pods.length} pod fixtures`);
});

for (const file of pods) {
  const name = file.replace(/\.yaml$/, '');
  test(`golden: ${name}`, () => {
    const out = rendered(file);
    for (const [ext, text] of [['nft', out.nft], ['iptables', out.iptables]] as const) {
      const target = path.join(golden, `${name}.${ext}`);
      if (update) writeFileSync(target, text);
      assert.ok(existsSync(target), `${target} missing: run with UPDATE_GOLDEN=1`);
      assert.equal(text, readFileSync(target, 'utf8'), `${name}.${ext} differs from the golden file`);
    }
  });

  test(`golden: ${name} is accepted by nft and iptables-restore`, { skip: skipUnlessRoot() }, () => {
    const out = rendered(file);
    // unshare --net: a private empty netns that disappears with the process.
    execFileSync('unshare', ['--net', 'nft', '-f', '-'], { input: out.nft, stdio: ['pipe', 'pipe', 'pipe'] });
    execFileSync('unshare', ['--net', 'iptables-nft-restore', '--noflush'], { input: out.v4, stdio: ['pipe', 'pipe', 'pipe'] });
    execFileSync('unshare', ['--net', 'ip6tables-nft-restore', '--noflush'], { input: out.v6, stdio: ['pipe', 'pipe', 'pipe'] });
  });
}
