// A bulk-stream source and sink run in a child process, so that a relay's
// CPU is all that differs between measured runs (bench/pump-throughput.ts,
// test/integration/native-pump.test.ts). Start it with
// `spawn(process.execPath, ['-e', BULK_STREAM_ENDPOINTS], {env: {BYTES}})`:
// it prints {"sinkPort"} first; for each port written to its stdin it sends
// BYTES to that port and prints {"bytes","ms"} when the sink sees the end.
// Connections that carry no bytes (a proxy's health probe passing through)
// are not runs.
export const BULK_STREAM_ENDPOINTS = `
  const net = require('node:net');
  const readline = require('node:readline');
  const total = Number(process.env.BYTES);
  const block = Buffer.alloc(1 << 20, 7);
  let pending;
  const sink = net.createServer((s) => {
    let got = 0;
    s.on('data', (c) => { got += c.length; });
    // Empty connections (HAProxy's readiness probe passing through) are not runs.
    s.on('end', () => { if (got > 0 && pending) { pending(got); pending = undefined; } s.end(); });
  });
  sink.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ sinkPort: sink.address().port })));
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const start = process.hrtime.bigint();
    pending = (got) => console.log(JSON.stringify({ bytes: got, ms: Number(process.hrtime.bigint() - start) / 1e6 }));
    const c = net.connect(Number(line), '127.0.0.1', () => {
      let sent = 0;
      const pump = () => {
        while (sent < total) { sent += block.length; if (!c.write(block)) return c.once('drain', pump); }
        c.end();
      };
      pump();
    });
    c.on('data', () => {});
  });
`;
