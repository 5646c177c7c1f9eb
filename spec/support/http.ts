// A minimal HTTP(S) client that sends exactly the headers given (agents' requests, byte for byte).
import http from 'node:http';
import https from 'node:https';
import { gunzipSync } from 'node:zlib';
import { responseProblems } from './openapi';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: any;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** For https:// URLs: the CA the server's certificate is checked against (its name must be localhost). */
  ca?: Buffer | string | string[];
}

export function request(url: string, opts: RequestOptions = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const common = { method: opts.method ?? 'GET', headers: opts.headers, agent: false as const, signal: opts.signal };
    const req = url.startsWith('https:')
      ? https.request(url, { ...common, ca: opts.ca, servername: 'localhost' }, onResponse)
      : http.request(url, common, onResponse);
    function onResponse(res: http.IncomingMessage): void {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body = Buffer.concat(chunks);
        if (res.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        const text = body.toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        const out = { status: res.statusCode ?? 0, headers: res.headers, body, text, json };
        // Every answer of a documented route is checked against docs/openapi.yaml, whatever the test asserts.
        const problems = responseProblems({ method: opts.method ?? 'GET', url, status: out.status, headers: res.headers, text, json });
        if (problems.length > 0) reject(new Error(`response does not match docs/openapi.yaml:\n${problems.join('\n')}`));
        else resolve(out);
      });
      res.on('error', reject);
    }
    req.on('error', reject);
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('request timed out')));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}
