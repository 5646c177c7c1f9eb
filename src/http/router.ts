// Matches a request path against the declared routes by segment shape (upstream's router): literal
// segments compare as sent, `:name` segments are percent-decoded into params. A path that matches a
// route under another method answers 405 with Allow; a malformed escape in a param is a 400.
import { HttpError } from './errors';
import type { RouteSpec } from './route';

interface Compiled {
  spec: RouteSpec;
  /** Literal segment, or undefined for a param at that position. */
  segments: (string | undefined)[];
  params: string[];
}

export type Match = { route: RouteSpec; params: Record<string, string> };

export class Router {
  private readonly compiled: Compiled[];

  constructor(routes: readonly RouteSpec[]) {
    this.compiled = routes.map((spec) => {
      const parts = spec.path.split('/').slice(1);
      return {
        spec,
        segments: parts.map((p) => (p.startsWith(':') ? undefined : p)),
        params: parts.filter((p) => p.startsWith(':')).map((p) => p.slice(1)),
      };
    });
  }

  /** The route and its params; throws RouteNotFound, MethodNotAllowed (with Allow) or MalformedUrl. */
  match(method: string, path: string): Match {
    // Go's net/http refuses a bad escape anywhere in the path before routing; so does this router.
    if (path.includes('%')) {
      const bad = BAD_ESCAPE.exec(path);
      if (bad) throw new HttpError('MalformedUrl', `Bad request: invalid URL escape "${path.slice(bad.index, bad.index + 3)}"`);
    }
    const parts = path.split('/');
    if (parts[0] !== '') throw new HttpError('RouteNotFound');
    parts.shift();
    const allowed: string[] = [];
    for (const c of this.compiled) {
      if (!sameShape(c.segments, parts)) continue;
      const m = c.spec.method;
      if (method === m || (m === 'GET' && method === 'HEAD')) return { route: c.spec, params: decodeParams(c, parts) };
      allowed.push(m === 'GET' ? 'GET, HEAD' : m);
    }
    if (allowed.length > 0) throw new HttpError('MethodNotAllowed', undefined, { Allow: allowed.join(', ') });
    throw new HttpError('RouteNotFound');
  }
}

function sameShape(segments: (string | undefined)[], parts: string[]): boolean {
  if (segments.length !== parts.length) return false;
  for (let i = 0; i < parts.length; i++) {
    const s = segments[i];
    if (s === undefined ? parts[i] === '' : s !== parts[i]) return false;
  }
  return true;
}

function decodeParams(c: Compiled, parts: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  let k = 0;
  for (let i = 0; i < parts.length; i++) {
    if (c.segments[i] !== undefined) continue;
    const raw = parts[i]!;
    let value: string;
    try {
      value = decodeURIComponent(raw);
    } catch {
      // Escapes are well-formed by now (match checked them): the bytes are not UTF-8.
      throw new HttpError('MalformedUrl', 'Bad request: path parameter is not valid UTF-8');
    }
    out[c.params[k++]!] = value;
  }
  return out;
}

const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;
