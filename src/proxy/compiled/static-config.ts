// `weir proxy --static-config FILE`: a CompiledProxyConfig (JSON) loaded at
// start into the CompiledConfigStore, for tests, debugging and running a
// proxy without a control plane's Istio config. A bad file stops the proxy
// with the field to fix; nothing of it is applied half.
import { readFileSync } from 'node:fs';
import { FieldError } from '../../common/errors.js';
import { validateCompiledConfig, type StaticConfig } from './validate.js';

export function loadStaticConfig(file: string): StaticConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new FieldError('--static-config', `cannot read ${file}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FieldError('--static-config', `${file} is not JSON: ${(e as Error).message}`);
  }
  try {
    return validateCompiledConfig(json);
  } catch (e) {
    if (e instanceof FieldError) throw new FieldError(`--static-config ${file}: ${e.field}`, e.reason, e.token);
    throw e;
  }
}
