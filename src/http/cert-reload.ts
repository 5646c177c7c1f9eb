// TLS certificate hot reload (upstream 9.5's ssl.certificate_reload): every interval the certificate,
// key and CA files are read again and, when any changed, the listener's secure context is replaced.
// New connections get the new certificate; held polls on existing connections are untouched.
import { createHash } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';

export interface CertificateSource {
  /** Reads the files again: the options for a new secure context. */
  read(): { cert?: string; key?: string; ca?: string[]; passphrase?: string; ticketKeys?: Buffer };
}

export class CertificateReloader {
  private timer: NodeJS.Timeout | undefined;
  private digest: string;

  constructor(private readonly servers: TlsServer[], private readonly source: CertificateSource, private readonly log: Logger) {
    this.digest = this.fingerprint(source.read());
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One look at the files: replaces the secure context when they changed and still make a valid one. */
  check(): boolean {
    let opts: ReturnType<CertificateSource['read']>;
    try {
      opts = this.source.read();
    } catch (err) {
      this.log.warn({ err }, 'TLS certificate reload: files unreadable; keeping the current certificate');
      return false;
    }
    const digest = this.fingerprint(opts);
    if (digest === this.digest) return false;
    // A file caught between truncation and rewrite reads empty; a secure context built without it would
    // serve no certificate at all (every handshake fails), so an empty part is a half-written pair too.
    if (!opts.cert?.trim() || !opts.key?.trim()) {
      this.log.warn('TLS certificate reload: new files refused (certificate or key empty); keeping the current certificate');
      return false;
    }
    try {
      for (const s of this.servers) s.setSecureContext(opts);
    } catch (err) {
      // A half-written pair (new certificate, old key) is refused; the next look tries again.
      this.log.warn({ err }, 'TLS certificate reload: new files refused; keeping the current certificate');
      return false;
    }
    this.digest = digest;
    this.log.info('TLS certificate reloaded');
    return true;
  }

  private fingerprint(o: ReturnType<CertificateSource['read']>): string {
    return createHash('sha256').update(JSON.stringify([o.cert, o.key, o.ca, o.passphrase, o.ticketKeys?.toString('hex')])).digest('hex');
  }
}
