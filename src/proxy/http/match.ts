// VirtualService HTTP match semantics, as Envoy applies Istio's config:
// string matches are exact, prefix or regex, and a regex must match the
// WHOLE value (RE2 full-match, which Envoy's safe_regex uses). JavaScript's
// regex engine backtracks, so patterns RE2 would refuse (back-references,
// look-arounds) and patterns that can backtrack catastrophically (a
// quantified group that itself contains a quantifier, e.g. (a+)+) are
// refused when compiled: the route never matches and the reason is reported
// in config_dump `ignored`. Matched values are capped in length as well.
// Within one HttpMatch every condition must hold; a route's matches are ORed.
import type { HttpMatch, StringMatch } from '../../istio/types.js';

/** Values longer than this never match a regex (bounds the work per request). */
const MAX_REGEX_INPUT = 8192;

export class UnsafeRegexError extends Error {}

/** Refuse what RE2 refuses and what can backtrack exponentially in V8. */
export function checkRegex(pattern: string): void {
  if (pattern.length > 1024) throw new UnsafeRegexError('regex longer than 1024 characters');
  if (/\\[1-9]|\\k</.test(pattern)) throw new UnsafeRegexError('back-references are not supported (RE2 syntax)');
  if (/\(\?<?[=!]/.test(pattern)) throw new UnsafeRegexError('look-around assertions are not supported (RE2 syntax)');
  // A group containing a quantifier, itself quantified: (a+)+, (a|aa)*, (.*a){5}.
  const stack: { quantified: boolean; alternation: boolean }[] = [];
  let escaped = false;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (escaped) { escaped = false; continue; }
    if (ch === '\\') { escaped = true; continue; }
    if (inClass) { if (ch === ']') inClass = false; continue; }
    if (ch === '[') { inClass = true; continue; }
    if (ch === '(') { stack.push({ quantified: false, alternation: false }); continue; }
    if (ch === '|' && stack.length) { stack[stack.length - 1].alternation = true; continue; }
    const isQuant = ch === '*' || ch === '+' || ch === '?' || ch === '{';
    if (isQuant && stack.length) stack[stack.length - 1].quantified = true;
    if (ch === ')') {
      const g = stack.pop();
      const next = pattern[i + 1];
      // An optional group (?) runs at most once: only repeating quantifiers can blow up.
      const outerQuant = next === '*' || next === '+' || next === '{';
      if (g && outerQuant && (g.quantified || g.alternation)) throw new UnsafeRegexError(`nested quantifier at offset ${i}: can backtrack exponentially`);
      if (g && stack.length && g.quantified) stack[stack.length - 1].quantified = true;
    }
  }
}

const compiled = new Map<string, RegExp>();

/** A full-match RegExp for an RE2-style pattern (cached; throws UnsafeRegexError / SyntaxError). */
export function fullMatchRegex(pattern: string, ignoreCase = false): RegExp {
  const k = `${ignoreCase ? 'i' : '-'}${pattern}`;
  let re = compiled.get(k);
  if (!re) {
    checkRegex(pattern);
    re = new RegExp(`^(?:${pattern})$`, ignoreCase ? 'iu' : 'u');
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(k, re);
  }
  return re;
}

export function stringMatches(m: StringMatch, value: string | undefined, ignoreCase = false): boolean {
  if (value === undefined) return false;
  if ('exact' in m) return ignoreCase ? value.toLowerCase() === m.exact.toLowerCase() : value === m.exact;
  if ('prefix' in m) return ignoreCase ? value.toLowerCase().startsWith(m.prefix.toLowerCase()) : value.startsWith(m.prefix);
  if (value.length > MAX_REGEX_INPUT) return false;
  try {
    return fullMatchRegex(m.regex, ignoreCase).test(value);
  } catch {
    return false; // refused at load time too (validateMatch); never matches
  }
}

/** What a request offers to the matcher. */
export interface MatchInput {
  method: string;
  /** Path without the query string. */
  path: string;
  query: URLSearchParams;
  scheme: string;
  authority: string;
  headers: Record<string, string | string[] | undefined>;
  port: number;
  sourceLabels: Record<string, string>;
  sourceNamespace: string;
}

function header(h: MatchInput['headers'], name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * Header matches as Istio renders them: an empty match object ({exact: ""}
 * or {prefix: ""}) means "present"; withoutHeaders inverts (absent, or
 * present and not matching).
 */
function headerMatches(m: StringMatch, v: string | undefined): boolean {
  if (v === undefined) return false;
  if ('prefix' in m && m.prefix === '') return true;
  return stringMatches(m, v);
}

export function matchOne(m: HttpMatch, r: MatchInput): boolean {
  if (m.uri && !stringMatches(m.uri, r.path, m.ignoreUriCase === true)) return false;
  if (m.scheme && !stringMatches(m.scheme, r.scheme)) return false;
  if (m.method && !stringMatches(m.method, r.method)) return false;
  if (m.authority && !stringMatches(m.authority, r.authority)) return false;
  if (m.port !== undefined && m.port !== r.port) return false;
  for (const [k, sm] of Object.entries(m.headers ?? {})) if (!headerMatches(sm, header(r.headers, k))) return false;
  for (const [k, sm] of Object.entries(m.withoutHeaders ?? {})) if (headerMatches(sm, header(r.headers, k))) return false;
  for (const [k, sm] of Object.entries(m.queryParams ?? {})) {
    const v = r.query.get(k);
    if (v === null || !stringMatches(sm, v)) return false;
  }
  for (const [k, v] of Object.entries(m.sourceLabels ?? {})) if (r.sourceLabels[k] !== v) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== r.sourceNamespace) return false;
  return true;
}

/** OR of the matches; no matches = every request. */
export function routeMatches(matches: HttpMatch[], r: MatchInput): boolean {
  return matches.length === 0 || matches.some((m) => matchOne(m, r));
}

/** Every regex in a match list, with the field it sits in (for load-time validation). */
export function regexesOf(matches: HttpMatch[], field: string): { field: string; pattern: string }[] {
  const out: { field: string; pattern: string }[] = [];
  const take = (f: string, sm: StringMatch | undefined) => { if (sm && 'regex' in sm) out.push({ field: f, pattern: sm.regex }); };
  matches.forEach((m, i) => {
    const f = `${field}[${i}]`;
    take(`${f}.uri.regex`, m.uri); take(`${f}.scheme.regex`, m.scheme); take(`${f}.method.regex`, m.method); take(`${f}.authority.regex`, m.authority);
    for (const [group, rec] of [['headers', m.headers], ['withoutHeaders', m.withoutHeaders], ['queryParams', m.queryParams]] as const) {
      for (const [k, sm] of Object.entries(rec ?? {})) take(`${f}.${group}.${k}.regex`, sm);
    }
  });
  return out;
}
