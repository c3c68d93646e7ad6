// weir proxy's interception mode: the flag, else Istio's injected
// ISTIO_META_INTERCEPTION_MODE, else REDIRECT; a bad value names its source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FieldError } from '../../src/common/errors.js';
import { resolveProxyConfig } from '../../src/proxy/config.js';

test('interception mode: default REDIRECT, env from the injector, flag wins, errors name the field', () => {
  assert.equal(resolveProxyConfig({}, {}).interceptionMode, 'REDIRECT');
  assert.equal(resolveProxyConfig({}, { ISTIO_META_INTERCEPTION_MODE: 'TPROXY' }).interceptionMode, 'TPROXY');
  assert.equal(resolveProxyConfig({ interceptionMode: 'redirect' }, { ISTIO_META_INTERCEPTION_MODE: 'TPROXY' }).interceptionMode, 'REDIRECT');
  assert.equal(resolveProxyConfig({}, {}).tproxyMark, 1337);
  assert.throws(() => resolveProxyConfig({ interceptionMode: 'NONE' }, {}), (e: unknown) => e instanceof FieldError && e.field === '--interception-mode');
  assert.throws(() => resolveProxyConfig({}, { ISTIO_META_INTERCEPTION_MODE: 'x' }), (e: unknown) => e instanceof FieldError && e.field === 'ISTIO_META_INTERCEPTION_MODE');
});
