// The exit-code table every `weir` command follows (README "Exit codes").
// Here, not in src/cli/, so the proxy's own command (src/proxy/command.ts,
// bundled without the CLI) uses the same numbers.
export const EXIT = { ok: 0, failure: 1, usage: 2, drift: 3, unreachable: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
