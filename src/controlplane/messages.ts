// Schemas of what a proxy may send the agent on proxy.sock (protocol.ts has
// the types). The socket is 0666 by design, so any local user or pod can
// connect: each decoded line is checked here before a single field is read,
// and what fails is a MessageError naming the field. The server answers it
// with {type:'error'} and closes that connection only.
import type { AckMsg, HelloMsg, ProxyToAgent } from './protocol.js';
import { csr } from './csr-messages.js';

export class MessageError extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isVersion = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= -1;

function hello(o: Record<string, unknown>): HelloMsg {
  const { versions, resume, claimed } = o;
  if (!Array.isArray(versions) || versions.length === 0 || versions.length > 64 || !versions.every((v) => Number.isSafeInteger(v))) {
    throw new MessageError('hello.versions: must be a non-empty list of integers');
  }
  const msg: HelloMsg = { type: 'hello', versions: versions as number[] };
  if (resume !== undefined && resume !== null) {
    if (!isObject(resume) || typeof resume.epoch !== 'string' || !isVersion(resume.version)) {
      throw new MessageError('hello.resume: must be {epoch: string, version: integer}');
    }
    msg.resume = { epoch: resume.epoch, version: resume.version };
  }
  if (claimed !== undefined && claimed !== null) {
    if (!isObject(claimed)) throw new MessageError('hello.claimed: must be an object');
    for (const k of ['namespace', 'name'] as const) {
      if (claimed[k] !== undefined && typeof claimed[k] !== 'string') throw new MessageError(`hello.claimed.${k}: must be a string`);
    }
    msg.claimed = { namespace: claimed.namespace as string | undefined, name: claimed.name as string | undefined };
  }
  return msg;
}

function ack(o: Record<string, unknown>): AckMsg {
  if (!isVersion(o.version) || o.version < 0) throw new MessageError('ack.version: must be a non-negative integer');
  return { type: 'ack', version: o.version };
}

/** One decoded JSON line from a proxy → a typed message, or MessageError naming what is wrong. */
export function parseProxyMessage(raw: unknown): ProxyToAgent {
  if (!isObject(raw)) throw new MessageError(`message: must be a JSON object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'a list' : typeof raw}`);
  switch (raw.type) {
    case 'hello': return hello(raw);
    case 'ack': return ack(raw);
    case 'csr': return csr(raw);
    default: throw new MessageError(`type: unknown message type ${JSON.stringify(raw.type)?.slice(0, 60)} (expected hello, ack or csr)`);
  }
}
