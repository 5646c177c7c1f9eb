// Files named by the configuration, refused at the start in an operator's words (src/cli/tls-check.ts,
// src/logging/logger.ts): an encrypted TLS key without its passphrase or with a wrong one, and a log
// directory that is a file.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TlsConfig } from '../../src/config/config';
import { checkServerTls } from '../../src/cli/tls-check';
import { createLogger } from '../../src/logging/logger';
import { localhostCertificate } from '../support/certs';
import { removeDir, tempDir } from '../support/fleet-server';

let dir: string;
beforeAll(() => { dir = tempDir(); });
afterAll(() => removeDir(dir));

describe('inputs.0.server.ssl.key encrypted', () => {
  let tls: TlsConfig;
  let keyPath: string;
  beforeAll(() => {
    const { certPath } = localhostCertificate(dir);
    // Any encrypted key will do: the key is refused before it is matched with the certificate.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    keyPath = join(dir, 'encrypted-key.pem');
    writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'right' }));
    tls = { enabled: true, certificate: certPath, key: keyPath, certificateAuthorities: [] } as unknown as TlsConfig;
  });

  test('without a passphrase: says the key is encrypted and where its passphrase goes', () => {
    expect(() => checkServerTls(tls)).toThrow(
      `invalid TLS key ${keyPath} (inputs.0.server.ssl.key): the key is encrypted: give its passphrase in inputs.0.server.ssl.key_passphrase_path`);
  });

  test('with a wrong passphrase: says so, naming the key and the setting', () => {
    expect(() => checkServerTls({ ...tls, keyPassphrase: 'wrong' })).toThrow(
      `wrong passphrase for the key ${keyPath} (inputs.0.server.ssl.key_passphrase_path)`);
  });
});

describe('logging.files.path', () => {
  const options = (filesPath: string) => ({
    level: 'info', toStderr: false, toFiles: true, filesPath, filesName: 'fleet-server', rotateEveryBytes: 1 << 20,
    keepFiles: 2, permissions: 0o600, rotateOnStartup: false,
  });

  test('an existing file: says it is a file, not a directory', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    expect(() => createLogger(options(file))).toThrow(`cannot open log file ${file}/fleet-server (logging.files.path): ${file} is a file, not a directory`);
  });
});
