// ECS JSON logs through pino, shaped like upstream's (log.level, @timestamp, message, ecs.version).
import pino, { type Logger } from 'pino';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export type { Logger };

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export interface LogOptions {
  level: string;
  toStderr: boolean;
  toFiles: boolean;
  filesPath: string;
  filesName: string;
}

function normalizeLevel(level: string): string {
  const l = level === 'warning' ? 'warn' : level === 'critical' ? 'fatal' : level;
  return LEVELS.has(l) ? l : 'info';
}

export function createLogger(opts: LogOptions): Logger {
  const streams: pino.StreamEntry[] = [];
  if (opts.toStderr) streams.push({ stream: pino.destination({ fd: 2, sync: false }) });
  if (opts.toFiles) {
    mkdirSync(opts.filesPath, { recursive: true });
    streams.push({ stream: pino.destination({ dest: join(opts.filesPath, opts.filesName), sync: false, mkdir: true }) });
  }
  const level = normalizeLevel(opts.level);
  return pino(
    {
      level: streams.length === 0 ? 'silent' : level,
      messageKey: 'message',
      base: { 'service.name': 'fleet-server', 'service.type': 'fleet-server', 'ecs.version': '1.6.0' },
      timestamp: () => `,"@timestamp":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ 'log.level': label }) },
      redact: { paths: ['service_token', '*.service_token', 'api_key', '*.api_key'], censor: '[redacted]' },
    },
    streams.length <= 1 ? (streams[0]?.stream ?? pino.destination({ fd: 2 })) : pino.multistream(streams),
  );
}
