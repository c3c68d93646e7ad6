// The app image works as a real pod: weir's bundle and native addon run under
// containerd as a `weir-proxy` sidecar with UID/GID 1337 (the identity the
// capture rules exempt), answer readiness and Prometheus on the pod IP, and
// stop cleanly with the pod. No capture here: that is weir-capture.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { skipUnlessRoot } from '../../support/netns.js';
import { runPod } from '../../support/cri.js';
import { APP_IMAGE } from '../../support/images.js';
import { startRuntimeNode, ipamLeases, type RuntimeNode } from './fixture.js';
import { proxySidecar, httpGet, waitFor } from './pods.js';

const skip = skipUnlessRoot() || (fs.existsSync('dist/weir.mjs') ? false : 'needs the bundle: npm run build');
let node: RuntimeNode;
let runDir: string;

before(async () => {
  if (skip) return;
  node = await startRuntimeNode({ withApp: true });
  runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'we-run-'));
});
after(async () => {
  await node?.stop();
  if (runDir) fs.rmSync(runDir, { recursive: true, force: true });
});

test('weir proxy runs in a CRI pod as UID 1337 and serves readiness + metrics on the pod IP', { skip }, async () => {
  const pod = await runPod(node.cri, {
    name: 'we-sidecar', namespace: 'default',
    containers: [
      { name: 'app', image: APP_IMAGE, command: ['/bin/sleep', '3600'] },
      proxySidecar('default', 'we-sidecar'),
    ],
  }, (p) => node.containerd.trackNetns(p));
  try {
    const ready = await waitFor(async () => {
      const r = await httpGet(`http://${pod.ip}:15021/healthz/ready`).catch(() => null);
      return r && r.status === 200 ? r : null;
    }, 20_000, `proxy readiness on ${pod.ip}:15021`).catch(async (err: Error) => {
      const st = await node.cri.containerStatus(pod.containerId('weir-proxy'));
      throw new Error(`${err.message}\nweir-proxy ${st.status.state} exit ${st.status.exit_code}; log:\n${pod.logs('weir-proxy')}`);
    });
    // No agent in this test: the proxy says it passes traffic through.
    assert.match(ready.body, /passing traffic through/);

    const metrics = await httpGet(`http://${pod.ip}:15090/stats/prometheus`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^# (HELP|TYPE) /m);

    // The process really runs as 1337 inside the pod.
    const id = await pod.exec('weir-proxy', ['/bin/id', '-u']);
    assert.equal(id.stdout.trim(), '1337');
    const ps = await pod.exec('app', ['/bin/ps', '-o', 'user,args']);
    assert.match(ps.stdout, /1337\s+\/usr\/bin\/node \/weir\/dist\/weir\.mjs proxy/, ps.stdout);
  } finally {
    await pod.remove();
  }
  assert.deepEqual(ipamLeases(node.net), []);
  assert.equal(fs.existsSync(pod.netnsPath), false);
});
