// Schemas of what a proxy may send the agent on proxy.sock (protocol.ts has
// the types). The socket is 0666 by design, so any local user or pod can
// connect: each decoded line is checked here before a single field is read,
// and what fails is a MessageError naming the field. The server answers it
// with {type:'error'} and closes that connection only.
import type { AckMsg, HelloMsg, NackError, NackMsg, ProxyToAgent } from './protocol.js';
import { isKind, KINDS, type Kind } from './v2/kinds.js';
import { csr } from './csr-messages.js';

export class MessageError extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isVersion = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= -1;
const MAX_NONCE = 64;
const MAX_NACK_ERRORS = 100;
const MAX_TEXT = 2000;

function resumeOf(resume: unknown): HelloMsg['resume'] {
  if (!isObject(resume) || typeof resume.epoch !== 'string') throw new MessageError('hello.resume: must be {epoch: string, version: integer} or {epoch: string, versions: {kind: integer}}');
  const out: NonNullable<HelloMsg['resume']> = { epoch: resume.epoch };
  if (resume.version !== undefined) {
    if (!isVersion(resume.version)) throw new MessageError('hello.resume.version: must be an integer ≥ -1');
    out.version = resume.version;
  }
  if (resume.versions !== undefined) {
    if (!isObject(resume.versions)) throw new MessageError('hello.resume.versions: must be an object of kind → version');
    const versions: Partial<Record<Kind, number>> = {};
    for (const [k, v] of Object.entries(resume.versions)) {
      if (!isKind(k)) throw new MessageError(`hello.resume.versions.${k.slice(0, 40)}: unknown kind (expected one of ${KINDS.join(', ')})`);
      if (!isVersion(v)) throw new MessageError(`hello.resume.versions.${k}: must be an integer ≥ -1`);
      versions[k] = v;
    }
    out.versions = versions;
  }
  if (out.version === undefined && out.versions === undefined) throw new MessageError('hello.resume: needs version (v1) or versions (v2)');
  return out;
}

function hello(o: Record<string, unknown>): HelloMsg {
  const { versions, resume, claimed } = o;
  if (!Array.isArray(versions) || versions.length === 0 || versions.length > 64 || !versions.every((v) => Number.isSafeInteger(v))) {
    throw new MessageError('hello.versions: must be a non-empty list of integers');
  }
  const msg: HelloMsg = { type: 'hello', versions: versions as number[] };
  if (resume !== undefined && resume !== null) msg.resume = resumeOf(resume);
  if (claimed !== undefined && claimed !== null) {
    if (!isObject(claimed)) throw new MessageError('hello.claimed: must be an object');
    for (const k of ['namespace', 'name'] as const) {
      if (claimed[k] !== undefined && typeof claimed[k] !== 'string') throw new MessageError(`hello.claimed.${k}: must be a string`);
    }
    msg.claimed = { namespace: claimed.namespace as string | undefined, name: claimed.name as string | undefined };
  }
  return msg;
}

/** kind, version and nonce: what ties an ack or nack to one push. */
function answerOf(what: 'ack' | 'nack', o: Record<string, unknown>): { kind: Kind; version: number; nonce: string } {
  if (!isKind(o.kind)) throw new MessageError(`${what}.kind: must be one of ${KINDS.join(', ')}`);
  if (!isVersion(o.version) || o.version < 0) throw new MessageError(`${what}.version: must be a non-negative integer`);
  if (typeof o.nonce !== 'string' || o.nonce.length === 0 || o.nonce.length > MAX_NONCE) throw new MessageError(`${what}.nonce: must be the nonce of the push it answers`);
  return { kind: o.kind, version: o.version, nonce: o.nonce };
}

function ack(o: Record<string, unknown>, protocol: number): AckMsg {
  if (protocol >= 2) return { type: 'ack', ...answerOf('ack', o) };
  if (!isVersion(o.version) || o.version < 0) throw new MessageError('ack.version: must be a non-negative integer');
  return { type: 'ack', version: o.version };
}

function nack(o: Record<string, unknown>): NackMsg {
  const base = answerOf('nack', o);
  if (!Array.isArray(o.errors) || o.errors.length === 0) throw new MessageError('nack.errors: must be a non-empty list');
  const errors: NackError[] = o.errors.slice(0, MAX_NACK_ERRORS).map((e, i) => {
    if (!isObject(e)) throw new MessageError(`nack.errors[${i}]: must be {name, field, message}`);
    for (const f of ['name', 'field', 'message'] as const) {
      if (typeof e[f] !== 'string') throw new MessageError(`nack.errors[${i}].${f}: must be a string`);
    }
    return { name: (e.name as string).slice(0, MAX_TEXT), field: (e.field as string).slice(0, MAX_TEXT), message: (e.message as string).slice(0, MAX_TEXT) };
  });
  return { type: 'nack', ...base, errors };
}

/**
 * One decoded JSON line from a proxy → a typed message, or MessageError
 * naming what is wrong. `protocol` is the version agreed in welcome (before
 * it, 1: only hello is expected then).
 */
export function parseProxyMessage(raw: unknown, protocol = 1): ProxyToAgent {
  if (!isObject(raw)) throw new MessageError(`message: must be a JSON object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'a list' : typeof raw}`);
  switch (raw.type) {
    case 'hello': return hello(raw);
    case 'ack': return ack(raw, protocol);
    case 'nack':
      if (protocol < 2) throw new MessageError('type: nack is a protocol 2 message; this connection speaks 1');
      return nack(raw);
    case 'csr': return csr(raw);
    default: throw new MessageError(`type: unknown message type ${JSON.stringify(raw.type)?.slice(0, 60)} (expected ${protocol >= 2 ? 'hello, ack, nack or csr' : 'hello, ack or csr'})`);
  }
}
