// A cluster worker runs the configuration its primary built, asked for over the IPC channel as it
// starts, rather than reading the -c file again: a worker started after the file was edited (a
// replacement) would otherwise run a different port, path.data or limits than its siblings and the
// primary. Over IPC, not in the environment: the configuration holds credentials (Elasticsearch's, the
// service token, key passphrases), and an environment is handed down to child processes and shown by
// `ps e`. The configuration is plain data, so the channel's JSON carries it whole.
import type { FleetServerConfig } from '../config/config';

/** worker → primary, once, before anything else. */
export interface ConfigRequest { t: 'config?' }
/** primary → worker: the answer. */
export interface ConfigAnswer { t: 'config'; config: FleetServerConfig }

/** The channel to the primary, as `process` is in a cluster worker. */
export interface PrimaryChannel {
  send(message: ConfigRequest): unknown;
  on(event: 'message', fn: (m: unknown) => void): unknown;
  off(event: 'message', fn: (m: unknown) => void): unknown;
  once(event: 'disconnect', fn: () => void): unknown;
  off(event: 'disconnect', fn: () => void): unknown;
}

/** The primary's configuration, asked of it; rejects if the primary goes first. */
export function configFromPrimary(channel: PrimaryChannel): Promise<FleetServerConfig> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      channel.off('message', onMessage);
      channel.off('disconnect', onGone);
    };
    const onMessage = (m: unknown): void => {
      if ((m as Partial<ConfigAnswer> | null)?.t !== 'config') return;
      done();
      resolve((m as ConfigAnswer).config);
    };
    const onGone = (): void => {
      done();
      reject(new Error('the primary went before it sent the configuration'));
    };
    channel.on('message', onMessage);
    channel.once('disconnect', onGone);
    channel.send({ t: 'config?' });
  });
}

/** The primary's answer to a worker's request. */
export function configAnswer(config: FleetServerConfig): ConfigAnswer {
  return { t: 'config', config };
}
