// ECS JSON logs through pino, shaped like upstream's (log.level, @timestamp, message, ecs.version).
import pino, { type Logger } from 'pino';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { withContext } from '../util/error-text';
import { logError, REDACTED_PATHS } from './log-secrets';
import { RotatingFile } from './rotating-file';
import { isoTime } from '../util/time';

export type { Logger };

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export interface LogOptions {
  level: string;
  toStderr: boolean;
  toFiles: boolean;
  filesPath: string;
  filesName: string;
  rotateEveryBytes: number;
  keepFiles: number;
  permissions: number;
  rotateOnStartup: boolean;
}

function normalizeLevel(level: string): string {
  const l = level === 'warning' ? 'warn' : level === 'critical' ? 'fatal' : level;
  return LEVELS.has(l) ? l : 'info';
}

export function createLogger(opts: LogOptions): Logger {
  const level = normalizeLevel(opts.level);
  // multistream filters each entry at its own level ('info' unless told); the logger's own level does the
  // filtering instead, so that changing it (agent mode) reaches every sink.
  const streams: pino.StreamEntry[] = [];
  if (opts.toStderr) streams.push({ level: 'trace', stream: pino.destination({ fd: 2, sync: false }) });
  let file: RotatingFile | undefined;
  if (opts.toFiles) {
    try {
      file = new RotatingFile({
        dir: opts.filesPath, name: opts.filesName, rotateEveryBytes: opts.rotateEveryBytes,
        keepFiles: opts.keepFiles, permissions: opts.permissions, rotateOnStartup: opts.rotateOnStartup,
      });
    } catch (err) {
      const context = `cannot open log file ${join(opts.filesPath, opts.filesName)} (logging.files.path)`;
      // mkdir's answer where a file stands in the directory's place is EEXIST, "file already exists".
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && isFile(opts.filesPath)) throw new Error(`${context}: ${opts.filesPath} is a file, not a directory`, { cause: err });
      throw withContext(context, err);
    }
    streams.push({ level: 'trace', stream: file });
  }
  const log = pino(
    {
      level: streams.length === 0 ? 'silent' : level,
      messageKey: 'message',
      base: { 'service.name': 'fleet-server', 'service.type': 'fleet-server', 'ecs.version': '1.6.0' },
      timestamp: () => `,"@timestamp":"${isoTime()}"`,
      formatters: { level: (label) => ({ 'log.level': label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      serializers: { err: logError },
    },
    streams.length <= 1 ? (streams[0]?.stream ?? pino.destination({ fd: 2 })) : pino.multistream(streams),
  );
  if (file) logFiles.set(log, file);
  return log;
}

function isFile(path: string): boolean {
  try {
    return !statSync(path).isDirectory();
  } catch {
    return false;
  }
}

const logFiles = new WeakMap<Logger, RotatingFile>();

/**
 * SIGHUP, as daemons take it: the log file is reopened at its path, so one that logrotate moved away
 * is created afresh. Returns whether this logger writes to a file at all.
 */
export function reopenLogFiles(log: Logger): boolean {
  const file = logFiles.get(log);
  file?.reopen();
  return file !== undefined;
}

export { normalizeLevel };

/**
 * Writes lines that are already log entries (a cluster worker's) to this logger's sinks: its file, and
 * stderr if it logs there. One process then owns the files and their rotation.
 */
export function rawLogWriter(log: Logger, toStderr: boolean): (line: string) => void {
  const file = logFiles.get(log);
  return (line) => {
    if (toStderr) process.stderr.write(line);
    file?.write(line);
  };
}
