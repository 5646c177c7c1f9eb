import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import type { Fleet } from '../fleet/fleet';

/** What a handler gets for one request. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: string[];
  fleet: Fleet;
  config: FleetServerConfig;
  log: Logger;
}

export type Handler = (ctx: RequestContext) => Promise<void>;
