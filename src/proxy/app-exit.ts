// For an injected regular-container proxy in a restartPolicy Never pod
// (no native sidecars): exit once the app containers have exited, so a Job
// completes. The injector gives such pods a shared PID namespace; the app's
// processes are those in another container's cgroup: not ours (the
// postStart hook runs in our container) and not PID 1's (the sandbox's
// pause container, children included). Seen once, then gone on two scans in
// a row = exited.
import * as fs from 'node:fs';

export interface AppExitWatch { stop(): void; sawApp(): boolean }

function cgroupOf(procRoot: string, pid: string): string | undefined {
  try { return fs.readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8'); } catch { return undefined; }
}

/** PIDs of processes outside our container (kernel threads have no cmdline and are skipped). */
export function appPids(procRoot = '/proc', self = String(process.pid)): number[] {
  const own = cgroupOf(procRoot, self);
  const sandbox = cgroupOf(procRoot, '1');
  const out: number[] = [];
  for (const ent of fs.readdirSync(procRoot)) {
    if (!/^\d+$/.test(ent) || ent === '1' || ent === self) continue;
    const cg = cgroupOf(procRoot, ent);
    if (cg === undefined || cg === own || cg === sandbox) continue;
    try { if (fs.readFileSync(`${procRoot}/${ent}/cmdline`).length === 0) continue; } catch { continue; }
    out.push(Number(ent));
  }
  return out;
}

export function watchAppExit(o: { onExit: () => void; intervalMs?: number; procRoot?: string; onNoPidNamespace?: () => void }): AppExitWatch {
  let seen = false;
  let goneScans = 0;
  let warned = false;
  const started = Date.now();
  const timer = setInterval(() => {
    let pids: number[];
    try { pids = appPids(o.procRoot); } catch { return; }
    if (pids.length > 0) { seen = true; goneScans = 0; return; }
    if (!seen) {
      // Not sharing the PID namespace (or the app has not started): say so once, keep waiting.
      if (!warned && Date.now() - started > 30_000) { warned = true; o.onNoPidNamespace?.(); }
      return;
    }
    if (++goneScans >= 2) { clearInterval(timer); o.onExit(); }
  }, o.intervalMs ?? 500);
  timer.unref();
  return { stop: () => clearInterval(timer), sawApp: () => seen };
}
