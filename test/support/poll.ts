// One way for tests to wait for something: poll a probe with a deadline.
// Tests must tolerate a loaded machine, so "wait N ms then assert" is never the
// proof; the deadline is only how long a failure takes to be reported.

export type Probe<T> = () => T | undefined | null | false | Promise<T | undefined | null | false>;

export interface PollOptions {
  /** Deadline in ms (default 5000). */
  ms?: number;
  /** Pause between probes in ms (default 20). */
  everyMs?: number;
  /** Appended to the timeout error (e.g. the logs of the processes involved). */
  detail?: () => string;
  /** Keep polling when the probe throws (a server not listening yet); the last error is reported. */
  tolerateErrors?: boolean;
}

/** Polls until `probe` returns a truthy value; resolves to it and how long it took. */
export async function untilTimed<T>(what: string, probe: Probe<T>, options: number | PollOptions = {}): Promise<{ value: T; ms: number }> {
  const o = typeof options === 'number' ? { ms: options } : options;
  const ms = o.ms ?? 5000;
  const every = o.everyMs ?? 20;
  const t0 = performance.now();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return { value: v, ms: performance.now() - t0 };
    } catch (err) {
      if (!o.tolerateErrors) throw err;
      lastError = err;
    }
    if (performance.now() - t0 > ms) {
      const why = lastError === undefined ? '' : `: last error: ${String(lastError)}`;
      const more = o.detail ? `\n${o.detail()}` : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${why}${more}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Polls until `probe` returns a truthy value and resolves to it. */
export async function until<T>(what: string, probe: Probe<T>, options: number | PollOptions = {}): Promise<T> {
  return (await untilTimed(what, probe, options)).value;
}
