// The text handling under NftablesBackend: table-level statements of a
// script (fast-path creates) and the nft listing parser/diff (verify).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diffTables, parseNftListing, planHashOf, tableLevelStatements } from '../../src/netns/nft-listing.js';

test('tableLevelStatements keeps comment and flags, drops chains, respects quotes', () => {
  const script = [
    'table inet weir_nat {',
    '  comment "weir plan=ab{c}"',
    '  chain output { type nat hook output priority -100; policy accept; tcp dport 1 return; }',
    '  set ex { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 } }',
    '}',
    'table inet weir_raw { flags dormant; comment "x;y"; chain c { udp dport 53 ct zone set 1; } }',
  ].join('\n');
  assert.deepEqual([...tableLevelStatements(script)], [
    ['weir_nat', ['comment "weir plan=ab{c}"']],
    ['weir_raw', ['flags dormant', 'comment "x;y"']],
  ]);
});

test('parseNftListing joins wrapped element lists and rejects text that is not a listing', () => {
  const listing = [
    'table inet weir_nat {',
    '\tcomment "weir plan=123"',
    '\tset ex {',
    '\t\ttype ipv4_addr',
    '\t\tflags interval',
    '\t\telements = { 10.0.0.0/8, 172.16.0.0/12,',
    '\t\t\t     192.168.0.0/16 }',
    '\t}',
    '',
    '\tchain output {',
    '\t\ttype nat hook output priority -100; policy accept;',
    '\t\tip daddr @ex counter packets 12 bytes 720 return',
    '\t}',
    '}',
    '',
  ].join('\n');
  const [t] = parseNftListing(listing);
  assert.equal(planHashOf([t]), '123');
  assert.deepEqual(t.blocks.map((b) => [b.kind, b.name, b.lines]), [
    ['set', 'ex', ['type ipv4_addr', 'flags interval', 'elements = { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 }']],
    ['chain', 'output', ['type nat hook output priority -100; policy accept;', 'ip daddr @ex counter return']],
  ]);
  assert.equal(t.text, listing.trimEnd() + '\n');
  assert.throws(() => parseNftListing('chain x {\n}\n'), /line 1: expected "table <family> <name> \{"/);
  assert.throws(() => parseNftListing('table inet x {\n\tchain c {\n'), /ended inside a table/);
});

test('diffTables: changed hook and unexpected chain are named', () => {
  const exp = parseNftListing('table inet w {\n\tchain o {\n\t\ttype nat hook output priority -100; policy accept;\n\t\taccept\n\t}\n}\n');
  const act = parseNftListing('table inet w {\n\tchain o {\n\t\ttype nat hook output priority 0; policy accept;\n\t\taccept\n\t}\n\tchain extra {\n\t}\n}\n');
  assert.deepEqual(diffTables(exp, act), [
    'changed: chain inet w o is `type nat hook output priority 0; policy accept;`, expected `type nat hook output priority -100; policy accept;`',
    'unexpected: chain inet w extra',
  ]);
});
