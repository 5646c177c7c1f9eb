// The end of an OpAMP request (as of every request) in process: its slots go back even when its error
// answer cannot be written, and its access-log line carries the path alone, bounded, whatever URL a
// client sent.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FleetError } from '../../src/fleet/errors';
import { HttpService } from '../../src/http/server';

interface Ended {
  limiter: { leave: jest.Mock };
  service: { inFlight: number };
  logged: { level: string; fields: Record<string, unknown>; text: string }[];
  res: { destroy: jest.Mock };
}

/** Runs the server's end-of-request step on fakes: a request refused 400, answered bare as OpAMP is. */
function endRequest(url: string, writeHead: () => void): Ended {
  const logged: Ended['logged'] = [];
  const at = (level: string) => (fields: Record<string, unknown>, text: string) => logged.push({ level, fields, text });
  const service = Object.assign(Object.create(HttpService.prototype) as object, {
    log: { isLevelEnabled: () => true, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    timedOut: new WeakSet(), inFlight: 1,
  }) as unknown as { inFlight: number; done: (...args: unknown[]) => void };
  const req = { url, method: 'POST', complete: true, headers: {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
  const res = {
    headersSent: false, destroyed: false, shouldKeepAlive: false, statusCode: 200, writeHead, end: jest.fn(), destroy: jest.fn(),
    getHeader: () => undefined,
  } as unknown as ServerResponse & { destroy: jest.Mock };
  const limiter = { leave: jest.fn() };
  const counters = { active: 1, drop: 0, fail: 0, body_out: 0 };
  service.done(req, res, { idleAgain: jest.fn() }, 0, 'req-1', limiter, counters, new FleetError('BadRequest', 'bad'), 'application/x-protobuf');
  return { limiter, service, logged, res };
}

test('an error answer that throws as it is written still gives back the route\'s slot and the max_connections one', () => {
  const e = endRequest('/v1/opamp', () => {
    throw new TypeError('Invalid character in header content');
  });
  // Old: the throw skipped both, and they were lost for the life of the process.
  expect(e.limiter.leave).toHaveBeenCalledTimes(1);
  expect(e.service.inFlight).toBe(0);
  expect(e.res.destroy).toHaveBeenCalled();
  expect(e.logged.some((l) => l.level === 'error')).toBe(true);
});

test('the access log line has the path without its query string, cut to 256 characters', () => {
  const e = endRequest(`/v1/opamp?${'q'.repeat(8000)}`, () => undefined);
  const line = e.logged.find((l) => l.text === 'HTTP request')!;
  // Old: the whole URL, query included (up to the header limit, ~8 KB a line).
  expect(line.fields['url.path']).toBe('/v1/opamp');
  const long = endRequest(`/api/fleet/agents/${'a'.repeat(8000)}/checkin?x=1`, () => undefined);
  const path = long.logged.find((l) => l.text === 'HTTP request')!.fields['url.path'] as string;
  expect(path.length).toBeLessThanOrEqual(256 + 3);
  expect(path.startsWith('/api/fleet/agents/aaa')).toBe(true);
  expect(long.limiter.leave).toHaveBeenCalledTimes(1);
});
