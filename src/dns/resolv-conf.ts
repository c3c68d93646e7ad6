// Reads the pod's resolv.conf: the upstream servers to forward to and the
// first search domain (answered directly to save the ndots:5 search walk).
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { FieldError } from '../common/errors.js';

export interface Upstream {
  host: string;
  port: number;
}

export interface ResolvConf {
  nameservers: Upstream[];
  /** Lower-case, no trailing dot, in file order. */
  search: string[];
  ndots: number;
}

/** Parses resolv.conf text; `source` names the file in errors. */
export function parseResolvConf(text: string, source = 'resolv.conf'): ResolvConf {
  const nameservers: Upstream[] = [];
  let search: string[] = [];
  let ndots = 1;
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (line === '') return;
    const [keyword, ...args] = line.split(/\s+/);
    const field = `${source}:${i + 1} ${keyword}`;
    switch (keyword) {
      case 'nameserver': {
        const host = args[0] ?? '';
        // glibc accepts a zone index on link-local v6 servers; node's dgram
        // accepts it too, so keep it but validate the address part.
        if (isIP(host.split('%')[0]) === 0) throw new FieldError(field, 'expected an IPv4 or IPv6 address', host);
        nameservers.push({ host, port: 53 });
        break;
      }
      case 'search':
        // As in glibc, the last search/domain line wins.
        search = args.map((d) => d.toLowerCase().replace(/\.$/, '')).filter((d) => d !== '');
        break;
      case 'domain':
        search = args[0] ? [args[0].toLowerCase().replace(/\.$/, '')] : [];
        break;
      case 'options':
        for (const opt of args) {
          const m = opt.match(/^ndots:(\d+)$/);
          if (m) ndots = Math.min(15, Number(m[1]));
        }
        break;
      default:
        // sortlist and unknown keywords do not affect a forwarder.
        break;
    }
  });
  if (nameservers.length === 0) throw new FieldError(`${source} nameserver`, 'no nameserver line: nowhere to forward non-cluster names');
  return { nameservers, search, ndots };
}

export function readResolvConf(path: string): ResolvConf {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FieldError('resolvConfPath', `cannot read ${path}: ${(err as Error).message}`);
  }
  return parseResolvConf(text, path);
}
