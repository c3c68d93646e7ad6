// Loads Istio fixture YAML (Kubernetes Services and Istio resources mixed)
// the way the agent would see them: Services through the RegistryBuilder,
// Istio resources through the readers.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { RegistryBuilder } from '../../src/controlplane/registry-builder.js';
import type { KubeEndpointSlice, KubeService } from '../../src/controlplane/kube-shapes.js';
import type { RegistryService } from '../../src/controlplane/types.js';
import { readIstioResource } from '../../src/istio/read.js';
import type { IstioResource } from '../../src/istio/types.js';
import type { Problem } from '../../src/istio/schema.js';

export const ISTIO_FIXTURES = path.resolve(import.meta.dirname, '../fixtures/istio');

export interface LoadedFixtures { services: RegistryService[]; resources: IstioResource[]; problems: { doc: string; problem: Problem }[] }

export function loadIstioFixtures(files: string[]): LoadedFixtures {
  const builder = new RegistryBuilder();
  const resources: IstioResource[] = [];
  const problems: LoadedFixtures['problems'] = [];
  for (const f of files) {
    for (const d of parseAllDocuments(readFileSync(path.join(ISTIO_FIXTURES, f), 'utf8'))) {
      const obj = d.toJS() as { kind?: string; metadata?: { name?: string } } | null;
      if (!obj) continue;
      if (obj.kind === 'Service') { builder.upsertService(obj as KubeService); continue; }
      if (obj.kind === 'EndpointSlice') { builder.upsertEndpointSlice(obj as KubeEndpointSlice); continue; }
      const r = readIstioResource(obj);
      for (const p of r.problems) problems.push({ doc: `${f}: ${obj.kind} ${obj.metadata?.name}`, problem: p });
      if (r.resource) resources.push(r.resource);
    }
  }
  return { services: [...builder.snapshot().services.values()], resources, problems };
}
