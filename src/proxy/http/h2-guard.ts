// HTTP/2 rapid reset (CVE-2023-44487): a client opens streams and resets
// them at once, so the server does the work of starting each request and
// the client pays nothing. Node's nghttp2 already rate-limits some of it;
// this adds Envoy's rule on top — a connection whose clients reset too many
// streams before the response (more than RESETS_PER_SECOND in a second, or
// at least half of its streams once it opened MIN_STREAMS) is closed with
// GOAWAY(ENHANCE_YOUR_CALM).
import http2, { type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';

export const RESETS_PER_SECOND = 200;
export const MIN_STREAMS = 500;

export function guardRapidReset(session: ServerHttp2Session, onAbuse: (why: string) => void): void {
  let streams = 0;
  let premature = 0;
  let windowStart = Date.now();
  let inWindow = 0;
  let closing = false;
  session.on('stream', (stream: ServerHttp2Stream) => {
    streams++;
    stream.once('aborted', () => {
      if (stream.headersSent) return;
      premature++;
      const now = Date.now();
      if (now - windowStart > 1000) { windowStart = now; inWindow = 0; }
      inWindow++;
      const why = inWindow > RESETS_PER_SECOND ? `${inWindow} streams reset by the client within 1 s`
        : streams >= MIN_STREAMS && premature * 2 >= streams ? `${premature} of ${streams} streams reset by the client before a response` : undefined;
      if (why && !closing && !session.destroyed) {
        closing = true;
        onAbuse(why);
        // GOAWAY first, then the connection once it is flushed (destroying at once loses the frame).
        session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        setTimeout(() => session.destroy(), 50).unref();
      }
    });
  });
}
