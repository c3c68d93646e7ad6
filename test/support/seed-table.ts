// The seeds' injection table (seeds/002: namespaceSelector match × default
// policy × pod override sidecar.istio.io/inject → injected?), row for row.
import type { InjectionPolicy } from '../../src/injector/decision.js';

export interface SeedRow { row: number; nsMatch: boolean; policy: InjectionPolicy; override: boolean | undefined; injected: boolean }

// "(default)" in the seed means the annotation is absent and the default applies.
export const SEED_TABLE: SeedRow[] = [
  { row: 1, nsMatch: true, policy: 'enabled', override: undefined, injected: true },
  { row: 2, nsMatch: true, policy: 'enabled', override: false, injected: false },
  { row: 3, nsMatch: true, policy: 'disabled', override: true, injected: true },
  { row: 4, nsMatch: true, policy: 'disabled', override: undefined, injected: false },
  { row: 5, nsMatch: false, policy: 'enabled', override: undefined, injected: false },
  { row: 6, nsMatch: false, policy: 'enabled', override: false, injected: false },
  { row: 7, nsMatch: false, policy: 'disabled', override: true, injected: false },
  { row: 8, nsMatch: false, policy: 'disabled', override: undefined, injected: false },
];

