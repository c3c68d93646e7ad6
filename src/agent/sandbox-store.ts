// What the agent knows about each sandbox it programmed (or chose not to),
// keyed by container id and persisted atomically as one JSON file under the
// agent's run dir, so DEL, CHECK, GC and repair work after an agent restart.
import { readFile, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import type { SandboxRecord } from './contracts.js';
import type { RedirectPlan } from '../redirect/types.js';
import { writeFileAtomic } from '../cni/atomic-file.js';

/** The persisted record also keeps the plan, so CHECK can verify against exactly what was applied. */
export interface StoredSandbox extends SandboxRecord {
  plan?: RedirectPlan;
  /**
   * Intent written BEFORE the backend touches the kernel: 'add' = an ADD was
   * programming `plan` into `netns`; 'remove' = a failed ADD's rollback did
   * not finish. A record still pending when the agent starts is a kill or
   * crash mid-ADD: CaptureController.recoverPending() finishes or removes it.
   */
  pending?: 'add' | 'remove';
}

interface StoreFile { version: 1; sandboxes: StoredSandbox[] }

export class SandboxStore {
  readonly file: string;
  private readonly records = new Map<string, StoredSandbox>();
  /** Saves are chained so concurrent updates never write out of order. */
  private saving: Promise<void> = Promise.resolve();
  /** Set when open() found an unreadable file and moved it here (the agent should log it). */
  recoveredFrom?: string;

  private constructor(file: string) {
    this.file = file;
  }

  /** Opens `<runDir>/sandboxes.json`, loading what a previous agent saved. */
  static async open(runDir: string): Promise<SandboxStore> {
    await mkdir(runDir, { recursive: true, mode: 0o700 });
    const store = new SandboxStore(path.join(runDir, 'sandboxes.json'));
    let text: string | undefined;
    try {
      text = await readFile(store.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text !== undefined) {
      let parsed: StoreFile | undefined;
      try {
        parsed = JSON.parse(text) as StoreFile;
      } catch { /* handled below */ }
      if (parsed?.version === 1 && Array.isArray(parsed.sandboxes)) {
        for (const r of parsed.sandboxes) store.records.set(r.containerId, r);
      } else {
        // Writes are atomic, so this is damage from outside (disk, a person).
        // Crash-looping the agent would block every pod on the node; the
        // records only speed up DEL/GC/CHECK (DEL without a record removes
        // unconditionally), so keep the evidence and start empty.
        store.recoveredFrom = `${store.file}.corrupt-${Date.now()}`;
        await rename(store.file, store.recoveredFrom);
      }
    }
    return store;
  }

  get(containerId: string): StoredSandbox | undefined {
    return this.records.get(containerId);
  }

  list(): StoredSandbox[] {
    return [...this.records.values()];
  }

  async put(record: StoredSandbox): Promise<void> {
    this.records.set(record.containerId, record);
    await this.save();
  }

  async delete(containerId: string): Promise<boolean> {
    const had = this.records.delete(containerId);
    if (had) await this.save();
    return had;
  }

  private save(): Promise<void> {
    const run = async () => {
      const body: StoreFile = { version: 1, sandboxes: this.list() };
      await writeFileAtomic(this.file, JSON.stringify(body), 0o600);
    };
    this.saving = this.saving.then(run, run);
    return this.saving;
  }
}
