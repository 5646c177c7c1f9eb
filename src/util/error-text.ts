// Errors as one line an operator can act on: the cause and the file or address involved, never a
// stack or an error object dump.
import { getSystemErrorMessage, types } from 'node:util';

interface SystemError extends Error {
  code?: string;
  syscall?: string;
  path?: string;
  address?: string;
  port?: number;
  errno?: number;
  hostname?: string;
}

/**
 * One line for an error. Node's system errors read "ENOTDIR: not a directory, mkdir '/x'"; they become
 * "/x: not a directory (ENOTDIR)" so the path leads and the code stays searchable.
 */
export function describeError(err: unknown): string {
  if (!isError(err)) return String(err);
  const e = err as SystemError;
  // A cluster worker's listen fails in the primary's bind.
  if ((e.syscall === 'listen' || e.syscall === 'bind') && e.code && e.port !== undefined) return `cannot listen on ${e.address ?? ''}:${e.port ?? ''}: ${reason(e)}`;
  // A name lookup's: "getaddrinfo ENOTFOUND x" alone reads as Node's "unknown node or service".
  if (e.syscall === 'getaddrinfo' && e.hostname) return `${e.hostname}: ${reason(e)}`;
  if (isSystem(e)) return e.path ? `${e.path}: ${reason(e)}` : reason(e);
  // OpenSSL's messages lead with an error code; its library and reason read better.
  const ssl = err as { library?: unknown; reason?: unknown };
  if (typeof ssl.library === 'string' && typeof ssl.reason === 'string') return `${ssl.library}: ${ssl.reason}`;
  // YAML errors run over several lines; the first is the readable part.
  return firstLine(e.message);
}

/** `context: cause`, the cause's path left out when the context already names it. */
export function withContext(context: string, err: unknown): Error {
  const e = err as SystemError;
  const cause = isError(err) && isSystem(e) && (!e.path || context.includes(e.path)) ? reason(e) : describeError(err);
  return new Error(`${context}: ${cause}`, { cause: err });
}

/**
 * The cause alone, for a message that names its own file, address or setting: a system error's reason
 * ("address already in use (EADDRINUSE)"), else describeError's line.
 */
export function causeText(err: unknown): string {
  const e = err as SystemError;
  return isError(err) && (isSystem(e) || e.syscall === 'getaddrinfo') ? reason(e) : describeError(err);
}

/** An Error of this realm or of Node's own (which a vm context, as jest's, does not take for its Error). */
function isError(err: unknown): err is Error {
  return err instanceof Error || types.isNativeError(err);
}

function isSystem(e: SystemError): boolean {
  return typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code);
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0]!.trim();
}

function reason(e: SystemError): string {
  // "ENOTDIR: not a directory, mkdir '/x'" → "not a directory (ENOTDIR)";
  // "listen EADDRINUSE: address already in use 127.0.0.1:8220" → "address already in use (EADDRINUSE)"
  const m = /^(?:\w+ )?E[A-Z]+: (.+?)(?:, \w+(?: '.*')?| \S+:\d+)?$/.exec(firstLine(e.message));
  // A bare "bind EADDRINUSE 127.0.0.1:8220" (a cluster worker's listen) has no words: the system's are used.
  // Go's words for a name that does not resolve (Node's: "unknown node or service").
  const text = e.code === 'ENOTFOUND' && e.syscall === 'getaddrinfo' ? 'no such host'
    : m ? m[1]! : typeof e.errno === 'number' ? getSystemErrorMessage(e.errno) : firstLine(e.message);
  return e.code && !text.includes(e.code) ? `${text} (${e.code})` : text;
}
