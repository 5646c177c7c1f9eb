// A log file that rotates by size the way upstream's libbeat file output does: `name` is the live
// file, `name.1` … `name.<keep>` the older ones, the oldest dropped. Writes go through SonicBoom
// (pino's asynchronous destination), one per file: a rotation hands the live file's destination its
// last bytes, ends it and starts a new one on a fresh file. Each file's size is then exactly what was
// written to its own destination, whatever SonicBoom still buffers — reopening one destination in place
// instead sends bytes still buffered from before the rotation into the new file, which then outgrows
// the limit. No log line is lost and the writer never waits for the disk.
import pino from 'pino';
import { existsSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirsSync } from '../util/make-dirs';

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
  private dest: SonicBoom;
  /** Destinations of rotated files still writing what they buffered; each closes once done. */
  private readonly retiring = new Set<SonicBoom>();
  private size: number;
  /** Writes a failing disk refused. */
  dropped = 0;

  constructor(private readonly opts: RotationOptions) {
    makeDirsSync(opts.dir, 0o700);
    this.path = join(opts.dir, opts.name);
    const existing = existsSync(this.path) ? statSync(this.path).size : 0;
    if (existing > 0 && opts.rotateOnStartup) this.shift();
    this.size = opts.rotateOnStartup ? 0 : existing;
    this.dest = this.open();
  }

  write(chunk: string): boolean {
    const bytes = Buffer.byteLength(chunk);
    if (this.size > 0 && this.size + bytes > this.opts.rotateEveryBytes) this.rotate();
    this.size += bytes;
    return this.dest.write(chunk);
  }

  /** Calls back once everything written so far is in its file (rotated files included). */
  flush(cb?: (err?: Error) => void): void {
    let pending = this.retiring.size + 1;
    let failed: Error | undefined;
    const done = (err?: Error): void => {
      failed ??= err;
      if (--pending === 0) cb?.(failed);
    };
    for (const old of this.retiring) whenDone(old, () => done());
    this.dest.flush(done);
  }

  flushSync(): void {
    // A retired destination is destroyed (its buffer written) just before it reports 'close'.
    for (const old of this.retiring) if (!(old as SonicBoom & { destroyed: boolean }).destroyed) old.flushSync();
    this.dest.flushSync();
  }

  /**
   * The live file may have been moved away (logrotate, SIGHUP): later lines go to a fresh file at the
   * path, while bytes already handed to the old destination follow its file.
   */
  reopen(): void {
    this.retire(() => undefined);
    this.size = existsSync(this.path) ? statSync(this.path).size : 0;
  }

  /** Ends every destination; `cb` runs once all files are closed. */
  end(cb?: () => void): void {
    const all = [...this.retiring, this.dest];
    let pending = all.length;
    for (const d of all) {
      whenDone(d, () => { if (--pending === 0) cb?.(); });
      if (d === this.dest) d.end();
    }
  }

  /**
   * The live file is opened synchronously so its descriptor is bound before any later rename: bytes a
   * retired destination still buffers follow its file to `name.1` (and beyond), never into the new file.
   */
  private open(): SonicBoom {
    makeDirsSync(this.opts.dir, 0o700);
    const fd = openSync(this.path, 'a', this.opts.permissions);
    const d = pino.destination({ fd, sync: false });
    // A full or failing disk must not end the process (an 'error' event without a listener throws):
    // the lines are dropped and counted, the server goes on.
    d.on('error', () => this.dropped++);
    return d;
  }

  private rotate(): void {
    this.size = 0;
    this.retire(() => this.shift());
  }

  /** Moves files (`move`), then opens a new live destination and lets the old one finish and close. */
  private retire(move: () => void): void {
    const old = this.dest;
    try {
      move();
      this.dest = this.open();
    } catch {
      // Logging must not take the server down: lines keep going to the file already open (renamed or
      // not), and rotation is tried again after another rotateEveryBytes.
      return;
    }
    this.retiring.add(old);
    whenDone(old, () => this.retiring.delete(old));
    old.end();
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

/** Once a destination has closed, or failed (a failed one never reports 'close'). */
function whenDone(d: SonicBoom, fn: () => void): void {
  let called = false;
  const once = (): void => {
    if (!called) {
      called = true;
      fn();
    }
  };
  d.once('close', once);
  d.once('error', once);
}
