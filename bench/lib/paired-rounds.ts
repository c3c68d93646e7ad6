// Two modes measured in the same rounds (the bench interleaves the modes in
// each round, so both see that round's load on a shared machine): compare
// them round by round instead of pooling. The decision rule a result file
// states is computed here:
// - per-round difference (a − b) or ratio (a / b);
// - its median over rounds, and in how many rounds each side is better;
// - a one-sided sign test: the chance of at least that many wins out of the
//   decided rounds if neither mode were better (each round a coin flip).
import { median } from './two-pod.js';

export interface PairedResult {
  /** Per round: a − b (diff) or a / b (ratio). */
  perRound: number[];
  median: number;
  /** The median is on a's side of no difference. */
  medianFavoursA: boolean;
  /** Rounds where a is better, worse, equal. */
  wins: number;
  losses: number;
  ties: number;
  /** P(at least `wins` wins of wins + losses rounds | p = ½). */
  signP: number;
}

/** `better`: which direction is a win for a (p99 latency: lower; conns/s: higher). */
export function paired(a: number[], b: number[], better: 'lower' | 'higher', how: 'diff' | 'ratio'): PairedResult {
  if (a.length !== b.length || a.length === 0) throw new Error(`paired: ${a.length} vs ${b.length} rounds`);
  const perRound = a.map((x, r) => (how === 'diff' ? x - b[r] : x / b[r]));
  const neutral = how === 'diff' ? 0 : 1;
  const sign = better === 'lower' ? -1 : 1;
  const wins = perRound.filter((d) => Math.sign(d - neutral) === sign).length;
  const losses = perRound.filter((d) => Math.sign(d - neutral) === -sign).length;
  const mid = median(perRound);
  return { perRound, median: mid, medianFavoursA: Math.sign(mid - neutral) === sign, wins, losses, ties: perRound.length - wins - losses, signP: signTestP(wins, wins + losses) };
}

/** One-sided binomial tail: P(X ≥ k), X ~ Bin(n, ½). */
export function signTestP(k: number, n: number): number {
  let tail = 0;
  for (let i = k; i <= n; i++) tail += choose(n, i);
  return n === 0 ? 1 : tail / 2 ** n;
}

function choose(n: number, k: number): number {
  let c = 1;
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
  return c;
}

/**
 * The rule: a goal is MET when the median per-round comparison favours a and
 * a wins more rounds than it loses; it is SHOWN (beyond this run's noise)
 * when, in addition, the sign test's p < 0.05. Anything else is NOT MET.
 */
export function verdict(p: PairedResult): 'shown' | 'met' | 'not met' {
  if (!p.medianFavoursA || p.wins <= p.losses) return 'not met';
  return p.signP < 0.05 ? 'shown' : 'met';
}
