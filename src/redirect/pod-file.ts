// Reading a pod manifest (YAML or JSON) from a file, for the CLI and tests.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { FieldError } from '../common/errors.js';
import type { Pod } from '../kube/pod-types.js';

/** Parses pod YAML/JSON text; `source` names the file in errors. */
export function parsePodManifest(text: string, source: string): Pod {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new FieldError(source, `not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new FieldError(source, 'expected a Pod object');
  const pod = doc as Partial<Pod>;
  if (pod.kind !== undefined && pod.kind !== 'Pod') throw new FieldError(`${source}: kind`, 'expected "Pod"', String(pod.kind));
  if (!pod.metadata || typeof pod.metadata !== 'object') throw new FieldError(`${source}: metadata`, 'missing or not an object');
  if (pod.metadata.annotations !== undefined && (typeof pod.metadata.annotations !== 'object' || pod.metadata.annotations === null)) {
    throw new FieldError(`${source}: metadata.annotations`, 'must be a map of strings');
  }
  if (!pod.spec || typeof pod.spec !== 'object') throw new FieldError(`${source}: spec`, 'missing or not an object');
  if (pod.spec.containers !== undefined && !Array.isArray(pod.spec.containers)) throw new FieldError(`${source}: spec.containers`, 'must be a list');
  return { ...pod, spec: { ...pod.spec, containers: pod.spec.containers ?? [] } } as Pod;
}

export function readPodFile(path: string): Pod {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new FieldError(path, `cannot read pod file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parsePodManifest(text, path);
}
