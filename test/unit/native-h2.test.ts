// native-h2.ts's version gate: the HTTP/2 codec calls node's own nghttp2
// through the header it was built with, so an older runtime must not get
// h2 connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { h2CodecUsable } from '../../src/proxy/http/native-h2.js';

test('node\'s nghttp2 at least the header\'s version: usable; older, unknown or missing: not', () => {
  assert.equal(h2CodecUsable('1.52.0', '1.61.0'), true);
  assert.equal(h2CodecUsable('1.52.0', '1.52.0'), true);
  assert.equal(h2CodecUsable('1.52.0', '2.0.0'), true);
  assert.equal(h2CodecUsable('1.52.0', '1.51.9'), false);
  assert.equal(h2CodecUsable('1.52.0', '1.9.0'), false, 'numeric, not lexical, comparison');
  assert.equal(h2CodecUsable(undefined, '1.61.0'), false, 'an addon without the HTTP/2 codec');
  assert.equal(h2CodecUsable('1.52.0', ''), false);
  assert.equal(h2CodecUsable('1.52.0'), true, `this node (${process.versions.nghttp2}) is new enough for Debian bookworm's header`);
});
