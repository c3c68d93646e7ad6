// TEST-ONLY fault injection at named points of a CNI ADD, so the crash-point
// suite (test/integration/add-crash-points.test.ts) can kill the agent at
// every step on the real kernel. Inert unless WEIR_TEST_CRASH_AT is set; an
// agent that sees it set logs a warning at start (never set it in a cluster).
//
//   WEIR_TEST_CRASH_AT=<point>[@<n>][:<action>]
//     point   one of CRASH_POINTS
//     n       act on the n-th time the point is reached (default 1)
//     action  kill   SIGKILL this process there (default)
//             throw  throw an uncaught exception from a fresh tick (last-resort policy)
//             reject leave a promise rejection unhandled (last-resort policy)
//             fail   make that step fail with an error (rollback paths)
export const CRASH_POINTS = [
  'add:before-intent',  // pod resolved, plan built, nothing written anywhere
  'add:after-intent',   // intent in the sandbox store, kernel untouched
  'iptables:between-families', // IPv4 committed, IPv6 not yet (iptables backend)
  'add:after-apply',    // every rule committed, record still says "programming"
  'add:after-record',   // record says captured, answer not yet sent
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

interface Spec { point: string; nth: number; action: 'kill' | 'throw' | 'reject' | 'fail' }

function parse(text: string | undefined): Spec | undefined {
  if (!text) return undefined;
  const m = /^([a-z:-]+?)(?:@(\d+))?(?::(kill|throw|reject|fail))?$/.exec(text);
  if (!m || !(CRASH_POINTS as readonly string[]).includes(m[1])) throw new Error(`WEIR_TEST_CRASH_AT: unknown crash point ${JSON.stringify(text)} (points: ${CRASH_POINTS.join(', ')})`);
  return { point: m[1], nth: Number(m[2] ?? 1), action: (m[3] ?? 'kill') as Spec['action'] };
}

const spec = parse(process.env.WEIR_TEST_CRASH_AT);
let hits = 0;

/** Describes the armed crash point, for the agent's start-up warning; undefined when inert. */
export function armedCrashPoint(): string | undefined {
  return spec ? `${spec.point}@${spec.nth}:${spec.action}` : undefined;
}

/** Called at each named step; does nothing unless this is the armed point's n-th hit. */
export function crashPoint(point: CrashPoint): void {
  if (!spec || spec.point !== point || ++hits !== spec.nth) return;
  switch (spec.action) {
    case 'kill': process.kill(process.pid, 'SIGKILL'); break;
    case 'throw': setImmediate(() => { throw new Error(`test crash point ${point}: uncaught exception`); }); break;
    case 'reject': void Promise.reject(new Error(`test crash point ${point}: unhandled rejection`)); break;
    case 'fail': throw new Error(`test crash point ${point}: injected failure`);
  }
}
