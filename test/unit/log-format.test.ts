// weir's log line: level names, ISO time, the process in `name`, the part in
// `component` (children only) and never the same key twice in one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { weirLogOptions } from '../../src/common/log.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Keys of one JSON line in order, duplicates kept (JSON.parse would hide them). */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && line[j + 1] === ':') keys.push(line.slice(i + 1, j));
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}

function collect(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean)); cb(); } });
  return { stream, lines };
}

test('agent-style logger: level name, ISO time, node, component from the child only, multistream levels still filter', () => {
  const ring = collect();
  const out = collect();
  const log = pino(weirLogOptions('weir-agent', 'debug', { node: 'n1' }), pino.multistream([{ stream: ring.stream, level: 'debug' }, { stream: out.stream, level: 'warn' }]));
  log.child({ component: 'controlplane' }).info({ pod: 'a/b' }, 'hello');
  log.debug('detail');
  log.warn('careful');
  assert.equal(ring.lines.length, 3);
  assert.equal(out.lines.length, 1, 'the warn-level stream got only the warning');
  const first = JSON.parse(ring.lines[0]) as Record<string, unknown>;
  assert.equal(first.level, 'info');
  assert.match(String(first.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(topLevelKeys(ring.lines[0]), ['level', 'time', 'node', 'name', 'component', 'pod', 'msg']);
  assert.equal(JSON.parse(out.lines[0]).level, 'warn');
  for (const line of ring.lines) {
    const keys = topLevelKeys(line);
    assert.equal(new Set(keys).size, keys.length, `duplicated key in ${line}`);
  }
});

test('base fields must not claim name or component', () => {
  assert.throws(() => weirLogOptions('x', 'info', { component: 'agent' }), /must not set name or component/);
});

test('createLogger (what weir proxy and the DNS server use) writes the same shape to stdout', () => {
  const script = `import { createLogger } from './src/common/log.ts';
    const l = createLogger({ name: 'weir-proxy' }); l.info('start'); l.child({ component: 'dns' }).warn({ port: 15053 }, 'dns up');`;
  const text = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8' });
  const lines = text.split('\n').filter(Boolean);
  assert.equal(lines.length, 2);
  assert.deepEqual(topLevelKeys(lines[0]), ['level', 'time', 'name', 'msg']);
  assert.deepEqual(topLevelKeys(lines[1]), ['level', 'time', 'name', 'component', 'port', 'msg']);
  assert.equal(JSON.parse(lines[1]).level, 'warn');
});
