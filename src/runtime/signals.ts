// The process's signals, as daemons take them, in both modes: SIGTERM and SIGINT drain and exit;
// SIGHUP reopens the log files (logrotate's postrotate convention) and otherwise changes nothing —
// Node's default for SIGHUP would end the process and every held check-in with it.
import type { Logger } from 'pino';
import { reopenLogFiles } from '../logging/logger';

export function handleSignals(log: Logger, stop: (signal: string) => void): void {
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    const files = reopenLogFiles(log);
    log.info({ signal: 'SIGHUP' }, files ? 'log files reopened' : 'SIGHUP ignored (no log files to reopen)');
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
}
