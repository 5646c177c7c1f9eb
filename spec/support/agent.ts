// A simulated Elastic Agent: the requests a real agent sends to enroll, check in and acknowledge.
import { request, type RequestOptions, type Response } from './http';

export const AGENT_VERSION = '9.6.0';

export interface Enrolled {
  id: string;
  apiKey: string;
  policyId: string;
}

export class SimAgent {
  ackToken = '';
  id = '';
  apiKey = '';

  /** For an https:// base URL: the CA the server's certificate is checked against. */
  tlsCa: string | string[] | undefined;

  constructor(readonly baseUrl: string, readonly version = AGENT_VERSION) {}

  private send(url: string, opts: RequestOptions): Promise<Response> {
    return request(url, this.tlsCa === undefined ? opts : { ...opts, ca: this.tlsCa });
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      'User-Agent': `Elastic Agent ${this.version}`,
      'Content-Type': 'application/json',
      Authorization: `ApiKey ${this.apiKey}`,
      ...extra,
    };
  }

  async enroll(token: string, body: Record<string, unknown> = {}): Promise<Response> {
    const res = await this.send(`${this.baseUrl}/api/fleet/agents/enroll`, {
      method: 'POST',
      headers: { 'User-Agent': `Elastic Agent ${this.version}`, 'Content-Type': 'application/json', Authorization: `ApiKey ${token}` },
      body: JSON.stringify({
        type: 'PERMANENT',
        metadata: { local: { elastic: { agent: { id: 'unknown', version: this.version } }, host: { hostname: 'spec-host' } }, user_provided: {}, tags: ['b', 'a', 'b'] },
        ...body,
      }),
    });
    if (res.status === 200) {
      this.id = res.json.item.id;
      this.apiKey = res.json.item.access_api_key;
    }
    return res;
  }

  async checkin(body: Record<string, unknown> = {}, opts: { timeoutMs?: number; signal?: AbortSignal; headers?: Record<string, string> } = {}): Promise<Response> {
    const res = await this.send(`${this.baseUrl}/api/fleet/agents/${this.id}/checkin`, {
      method: 'POST',
      headers: this.headers(opts.headers),
      body: JSON.stringify({ status: 'online', message: 'Running', ack_token: this.ackToken, ...body }),
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
    });
    if (res.status === 200 && res.json?.ack_token) this.ackToken = res.json.ack_token;
    return res;
  }

  async ack(events: Record<string, unknown>[]): Promise<Response> {
    return this.send(`${this.baseUrl}/api/fleet/agents/${this.id}/acks`, {
      method: 'POST',
      headers: this.headers(),
      body: JSON.stringify({ events: events.map((e) => ({ type: 'ACTION_RESULT', subtype: 'ACKNOWLEDGED', agent_id: this.id, timestamp: new Date().toISOString(), message: 'ack', ...e })) }),
    });
  }

  /** POST /api/fleet/uploads with the file info an agent sends for a diagnostics bundle. */
  async uploadBegin(info: Record<string, unknown>): Promise<Response> {
    return this.send(`${this.baseUrl}/api/fleet/uploads`, { method: 'POST', headers: this.headers(), body: JSON.stringify(info) });
  }

  async uploadChunk(uploadId: string, n: number | string, data: Buffer, sha2: string | undefined): Promise<Response> {
    const headers = this.headers({ 'Content-Type': 'application/octet-stream' });
    if (sha2 !== undefined) headers['X-Chunk-SHA2'] = sha2;
    return this.send(`${this.baseUrl}/api/fleet/uploads/${uploadId}/${n}`, { method: 'PUT', headers, body: data });
  }

  async uploadComplete(uploadId: string, transithash: string | undefined): Promise<Response> {
    const body = transithash === undefined ? {} : { transithash: { sha256: transithash } };
    return this.send(`${this.baseUrl}/api/fleet/uploads/${uploadId}`, { method: 'POST', headers: this.headers(), body: JSON.stringify(body) });
  }

  async getFile(id: string, headers: Record<string, string> = {}, query = ''): Promise<Response> {
    return this.send(`${this.baseUrl}/api/fleet/file/${id}${query}`, { headers: this.headers(headers) });
  }

  async getArtifact(id: string, sha2: string): Promise<Response> {
    return this.send(`${this.baseUrl}/api/fleet/artifacts/${id}/${sha2}`, { headers: this.headers() });
  }
}
