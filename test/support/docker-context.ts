// What `docker build .` would send as its context, computed the way Docker
// reads .dockerignore (moby/patternmatcher): each line is a pattern, cleaned,
// a leading "/" dropped; `*` and `?` do not cross "/", `**` matches any
// number of directories; `!` re-includes; the LAST pattern that matches a
// path or any of its parent directories decides. Lets a test check what an
// image would contain without Docker.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

interface Pattern { re: RegExp; negate: boolean; text: string }

function toRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        // "**/" matches zero or more directories; a trailing "**" everything below.
        if (pattern[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i);
      if (end < 0) { re += '\\['; continue; }
      re += `[${pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < pattern.length) { re += `\\${pattern[++i]}`; }
    else re += c.replace(/[.+^${}()|\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function parseDockerignore(text: string): Pattern[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => {
    const negate = l.startsWith('!');
    const body = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+/, '').replace(/\/+$/, '');
    return { re: toRegExp(body), negate, text: l };
  });
}

/** True when `file` (relative, "/"-separated) is excluded from the context. */
export function excluded(patterns: Pattern[], file: string): boolean {
  const parents: string[] = [];
  const parts = file.split('/');
  for (let i = 1; i < parts.length; i++) parents.push(parts.slice(0, i).join('/'));
  let out = false;
  for (const p of patterns) {
    if (p.re.test(file) || parents.some((d) => p.re.test(d))) out = !p.negate;
  }
  return out;
}

/** Every file under `root` (what is on disk now, host builds included) that the context keeps. */
export function buildContext(root: string): { kept: string[]; dropped: string[] } {
  const patterns = parseDockerignore(readFileSync(path.join(root, '.dockerignore'), 'utf8'));
  const kept: string[] = [];
  const dropped: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      // A whole excluded directory is reported once (Docker skips it the same way).
      if (e.isDirectory() && excluded(patterns, p) && !patterns.some((x) => x.negate)) { dropped.push(`${p}/`); continue; }
      if (e.isDirectory()) walk(p);
      else (excluded(patterns, p) ? dropped : kept).push(p);
    }
  };
  walk('');
  return { kept, dropped };
}
