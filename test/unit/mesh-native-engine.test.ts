// Which engine carries opaque-TCP mesh mTLS: the flag and its errors, the
// fallback when the addon has no TLS relay, and which ClientHellos the native
// relay takes (mesh TCP ALPN only; HTTP over mTLS stays node:tls).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { resolveProxyConfig } from '../../src/proxy/config.js';
import { isMeshTcpAlpn, nativeMeshTls } from '../../src/proxy/mtls/native-tls.js';
import { tlsRelayAvailable } from '../../src/native/tls-relay.js';

test('--mtls-engine: auto by default, native/node/auto accepted (flag or WEIR_MTLS_ENGINE), anything else names the flag', () => {
  assert.equal(resolveProxyConfig({}, {}).mtlsEngine, 'auto');
  assert.equal(resolveProxyConfig({ mtlsEngine: 'node' }, {}).mtlsEngine, 'node');
  assert.equal(resolveProxyConfig({}, { WEIR_MTLS_ENGINE: 'native' }).mtlsEngine, 'native');
  assert.throws(() => resolveProxyConfig({ mtlsEngine: 'openssl' }, {}), /--mtls-engine.*auto, native or node/);
});

test('engine choice: node never builds the relay; auto builds it when the addon has it', () => {
  assert.equal(nativeMeshTls('node', 'cluster.local', 1000, new Registry()), undefined);
  assert.equal(nativeMeshTls('auto', 'cluster.local', 1000, new Registry()) !== undefined, tlsRelayAvailable());
});

test('only a mesh-TCP ALPN offer goes native: istio-peer-exchange/istio yes; istio-h2, istio-http/1.1, mixed or none no', () => {
  assert.equal(isMeshTcpAlpn(['istio-peer-exchange', 'istio']), true);
  assert.equal(isMeshTcpAlpn(['istio']), true);
  assert.equal(isMeshTcpAlpn(['istio-h2']), false);
  assert.equal(isMeshTcpAlpn(['istio-http/1.1', 'istio']), false);
  assert.equal(isMeshTcpAlpn([]), false);
});
