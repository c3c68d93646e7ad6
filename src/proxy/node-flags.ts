// V8 flags every weir proxy runs with (the injected container's command, the
// test harness and the benches all take them from here).
//
// --max-semi-space-size=1 (MiB): V8's young generation grows its semi-spaces up
// to 16 MiB each under a high allocation rate — an HTTP proxy's — and keeps
// them, so a proxy at load held 96–130 MB RSS against 55 MB idle. With 1 MiB
// semi-spaces, the same runs (bench/profile-http.ts, PROFILE=0, two rounds,
// h1 and h2, shared VM) held 81–98 MB, and CPU per request did not rise
// (0.27–0.50 ms against 0.31–0.71): a proxy's garbage dies young, so the
// scavenges stay cheap even when they are more frequent.
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
