// Finds weir's capture core in this build, for the demo: the backend
// selector (src/netns/backends.ts getBackend) when present, else the
// nftables backend with the nftables renderer. Loaded dynamically so the
// demo still runs (and says what is missing) while parts are being built.
import type { Pod } from '../../src/kube/pod-types.js';
import type { RedirectPlan } from '../../src/redirect/types.js';

export interface Capture {
  /** One line for a person: which weir code programs the rules. */
  how: string;
  apply(netnsPath: string, pod: Pod): Promise<void>;
}

interface BackendLike { name: string; apply(netns: string, plan: RedirectPlan): Promise<void> }

async function tryImport<T>(rel: string): Promise<T | null> {
  try {
    return (await import(new URL(rel, import.meta.url).href)) as T;
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return null;
    throw err;
  }
}

export async function captureBackend(): Promise<Capture | null> {
  const plan = await tryImport<{ buildPlan(pod: Pod): RedirectPlan }>('../../src/redirect/plan.ts');
  if (!plan) return null;
  const selector = await tryImport<{ getBackend(name?: string): BackendLike | Promise<BackendLike> }>('../../src/netns/backends.ts');
  let backend: BackendLike;
  let how: string;
  if (selector) {
    backend = await selector.getBackend();
    how = `buildPlan(pod) -> getBackend() [${backend.name}] .apply(netns) — what the agent does on CNI ADD`;
  } else {
    const nft = await tryImport<{ NftablesBackend: new (r: object) => BackendLike }>('../../src/netns/nft-backend.ts');
    const render = await tryImport<{ NFT_TABLES: readonly string[]; renderNftables(p: RedirectPlan): string; renderNftablesDefinition(p: RedirectPlan): string }>('../../src/redirect/render-nftables.ts');
    if (!nft || !render) return null;
    backend = new nft.NftablesBackend({ tables: render.NFT_TABLES, render: render.renderNftables, renderDefinition: render.renderNftablesDefinition });
    how = 'buildPlan(pod) -> NftablesBackend(renderNftables).apply(netns) — what the agent does on CNI ADD';
  }
  return { how, apply: (netns, pod) => backend.apply(netns, plan.buildPlan(pod)) };
}
