// The registry as a v2 kind (`Registry`): the builder's versions and
// history, with each service's JSON text as the builder already encoded it.
import type { RegistryBuilder } from '../registry-builder.js';
import type { KindDelta, KindFeed } from './versioned-kind.js';

export function registryFeed(builder: RegistryBuilder): KindFeed {
  return {
    version: () => builder.currentVersion(),
    full: () => ({ version: builder.currentVersion(), upserts: builder.serviceJsons() }),
    since(fromVersion: number): KindDelta | undefined {
      const d = builder.deltaSince(fromVersion);
      if (!d) return undefined;
      const upserts = d.upserts.map((s) => builder.serviceJson(`${s.namespace}/${s.name}`) ?? JSON.stringify(s));
      return { fromVersion: d.fromVersion, version: d.version, upserts, deletes: d.deletes };
    },
  };
}
