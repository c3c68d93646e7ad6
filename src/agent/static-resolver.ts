// A PodResolver over Pod objects held in memory or read from a directory of
// JSON files (one Pod per file): for tests and the no-cluster demo.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PodResolver } from './contracts.js';
import type { Pod } from '../kube/pod-types.js';

export class StaticResolver implements PodResolver {
  private readonly pods = new Map<string, Pod>();
  /** When set, getPod() fails as an unreachable API server would. */
  unavailable?: Error;

  constructor(pods: Pod[] = []) {
    for (const p of pods) this.set(p);
  }

  static async fromDir(dir: string): Promise<StaticResolver> {
    const r = new StaticResolver();
    for (const f of (await readdir(dir)).filter((n) => n.endsWith('.json')).sort()) {
      const file = path.join(dir, f);
      let pod: Pod;
      try {
        pod = JSON.parse(await readFile(file, 'utf8')) as Pod;
      } catch (e) {
        throw new Error(`${file}: not valid JSON: ${(e as Error).message}`);
      }
      if (!pod?.metadata?.name) throw new Error(`${file}: metadata.name: missing`);
      r.set(pod);
    }
    return r;
  }

  set(pod: Pod): void {
    if (!pod.metadata.name) throw new Error('StaticResolver.set: metadata.name: missing');
    this.pods.set(`${pod.metadata.namespace ?? 'default'}/${pod.metadata.name}`, pod);
  }

  remove(namespace: string, name: string): void {
    this.pods.delete(`${namespace}/${name}`);
  }

  async getPod(namespace: string, name: string, uid?: string): Promise<Pod | undefined> {
    if (this.unavailable) throw this.unavailable;
    const pod = this.pods.get(`${namespace}/${name}`);
    // A different uid is a different pod that reused the name: not this sandbox's.
    if (pod && uid && pod.metadata.uid && pod.metadata.uid !== uid) return undefined;
    return pod;
  }
}
