// A log file that rotates by size the way upstream's libbeat file output does: `name` is the live
// file, `name.1` … `name.<keep>` the older ones, the oldest dropped. Writes go through SonicBoom
// (pino's asynchronous destination); rotation renames the files and reopens in place, so no log
// line is lost and the writer never blocks on a rename.
import pino from 'pino';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface RotationOptions {
  dir: string;
  name: string;
  /** Rotate once the live file would grow past this many bytes. */
  rotateEveryBytes: number;
  /** Rotated files kept besides the live one. */
  keepFiles: number;
  /** File mode of new log files (upstream: 0600). */
  permissions: number;
  rotateOnStartup: boolean;
}

type SonicBoom = ReturnType<typeof pino.destination>;

export class RotatingFile {
  private readonly path: string;
  private readonly dest: SonicBoom;
  private size: number;

  constructor(private readonly opts: RotationOptions) {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    this.path = join(opts.dir, opts.name);
    const existing = existsSync(this.path) ? statSync(this.path).size : 0;
    if (existing > 0 && opts.rotateOnStartup) this.shift();
    this.size = opts.rotateOnStartup ? 0 : existing;
    this.dest = pino.destination({ dest: this.path, sync: false, mkdir: true, mode: opts.permissions });
  }

  write(chunk: string): boolean {
    const bytes = Buffer.byteLength(chunk);
    if (this.size > 0 && this.size + bytes > this.opts.rotateEveryBytes) {
      this.shift();
      this.dest.reopen();
      this.size = 0;
    }
    this.size += bytes;
    return this.dest.write(chunk);
  }

  flush(cb?: (err?: Error) => void): void {
    this.dest.flush(cb);
  }

  flushSync(): void {
    this.dest.flushSync();
  }

  /** The live file may have been moved away (logrotate): write to the path afresh. */
  reopen(): void {
    this.size = existsSync(this.path) ? statSync(this.path).size : 0;
    this.dest.reopen();
  }

  end(): void {
    this.dest.end();
  }

  /** name.(k-1) → name.k down to name → name.1; the file past `keepFiles` is removed. */
  private shift(): void {
    const keep = Math.max(0, this.opts.keepFiles);
    rmSync(`${this.path}.${keep}`, { force: true });
    for (let k = keep - 1; k >= 1; k--) {
      if (existsSync(`${this.path}.${k}`)) renameSync(`${this.path}.${k}`, `${this.path}.${k + 1}`);
    }
    if (keep === 0) rmSync(this.path, { force: true });
    else if (existsSync(this.path)) renameSync(this.path, `${this.path}.1`);
  }
}
