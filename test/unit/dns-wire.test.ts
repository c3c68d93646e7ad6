// Query parsing: keys fold ASCII case only, names are bounded, every section
// is checked against the packet's length.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseQuery, WireError } from '../../src/dns/wire.js';
import { encodeQuery } from './dns-support.js';

function rawQuery(labels: Buffer[], qtype = 1): Buffer {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const name = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]);
  const tail = Buffer.from([0, qtype, 0, 1]);
  return Buffer.concat([header, name, tail]);
}

test('qname lower-cased and dotted; key folds ASCII case only', () => {
  const q = parseQuery(Buffer.from(encodeQuery('WeB.Ns.svc.CLUSTER.local', 'AAAA', { edns: 1232 })));
  assert.equal(q.qname, 'web.ns.svc.cluster.local');
  assert.equal(q.qtype, 28);
  assert.equal(q.ednsUdpSize, 1232);
  assert.equal(q.key, parseQuery(Buffer.from(encodeQuery('web.ns.svc.cluster.local', 'AAAA', { edns: 1232 }))).key);
  assert.notEqual(q.key, parseQuery(Buffer.from(encodeQuery('web.ns.svc.cluster.local', 'AAAA'))).key, 'EDNS is part of the key');

  const upperLatin1 = parseQuery(rawQuery([Buffer.from([0xc0]), Buffer.from('example')]));
  const lowerLatin1 = parseQuery(rawQuery([Buffer.from([0xe0]), Buffer.from('example')]));
  assert.equal(upperLatin1.qnameIsPlain, false);
  assert.notEqual(upperLatin1.key, lowerLatin1.key, 'non-ASCII bytes are not case-folded (RFC 4343)');
  const dotted = parseQuery(rawQuery([Buffer.from('a.b'), Buffer.from('example')]));
  assert.equal(dotted.qnameIsPlain, false, 'a label containing a dot is never matched locally');
});

test('malformed questions throw WireError', () => {
  const long = Array.from({ length: 5 }, () => Buffer.alloc(63, 0x61));
  assert.throws(() => parseQuery(rawQuery(long)), WireError, 'name over 255 bytes');
  assert.ok(parseQuery(rawQuery(long.slice(0, 3))));
  const pointer = rawQuery([Buffer.from('x')]);
  pointer[12] = 0xc0;
  assert.throws(() => parseQuery(pointer), WireError);
  const counts = Buffer.from(encodeQuery('web', 'A'));
  counts.writeUInt16BE(1, 10); // claims an additional record that is not there
  assert.throws(() => parseQuery(counts), WireError);
  assert.throws(() => parseQuery(Buffer.alloc(11)), WireError);
});
