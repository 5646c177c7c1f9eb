// Routes by path shape, naming the limiter each route uses (upstream's router).
import type { RouteName } from '../config/limits';
import type { Handler } from './context';
import { handleAcks } from './handlers/acks';
import { handleAuditUnenroll } from './handlers/audit';
import { handleCheckin } from './handlers/checkin';
import { handleEnroll } from './handlers/enroll';
import { handleStatus } from './handlers/status';

export interface Route {
  method: string;
  limit: RouteName;
  handler: Handler;
}

export type Match = { route: Route; params: string[] } | { methodNotAllowed: true; allow: string } | undefined;

const STATUS: Route = { method: 'GET', limit: 'status', handler: handleStatus };
const ENROLL: Route = { method: 'POST', limit: 'enroll', handler: handleEnroll };
const CHECKIN: Route = { method: 'POST', limit: 'checkin', handler: handleCheckin };
const ACKS: Route = { method: 'POST', limit: 'ack', handler: handleAcks };
const AUDIT: Route = { method: 'POST', limit: 'audit_unenroll', handler: handleAuditUnenroll };

function pick(route: Route, method: string, params: string[]): Match {
  if (method === route.method || (route.method === 'GET' && method === 'HEAD')) return { route, params };
  return { methodNotAllowed: true, allow: route.method === 'GET' ? 'GET, HEAD' : route.method };
}

export function matchRoute(method: string, path: string): Match {
  const s = path.split('/');
  // s[0] is the empty string before the leading slash.
  if (s[1] !== 'api') return undefined;
  if (s.length === 3 && s[2] === 'status') return pick(STATUS, method, []);
  if (s[2] !== 'fleet' || s[3] !== 'agents') return undefined;
  if (s.length === 5 && s[4] === 'enroll') return pick(ENROLL, method, []);
  const id = s[4] !== undefined ? decodeURIComponent(s[4]) : '';
  if (id === '') return undefined;
  if (s.length === 6 && s[5] === 'checkin') return pick(CHECKIN, method, [id]);
  if (s.length === 6 && s[5] === 'acks') return pick(ACKS, method, [id]);
  if (s.length === 7 && s[5] === 'audit' && s[6] === 'unenroll') return pick(AUDIT, method, [id]);
  return undefined;
}
