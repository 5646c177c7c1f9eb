// `mkdir -p`, made here rather than with mkdirSync's `recursive`: Node's recursive mkdir loops forever
// (at full CPU, and a SIGTERM cannot stop the synchronous call) where mkdir answers ENOENT under a parent
// that exists, as in a pseudo-filesystem (`path.data=/proc/foo`). Here each missing directory is made
// once, from the outermost, and any error but "made meanwhile" is thrown as the system said it.
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Makes `dir` and its missing parents with `mode` (less the umask); returns the first one made, as mkdirSync's recursive does. */
export function makeDirsSync(dir: string, mode: number): string | undefined {
  const missing: string[] = [];
  const target = resolve(dir);
  for (let at = target; ; at = dirname(at)) {
    try {
      if (statSync(at).isDirectory()) break;
      // As mkdir says it: the directory itself taken by a file is EEXIST, a file on the way ENOTDIR.
      const [code, words] = at === target ? ['EEXIST', 'file already exists'] : ['ENOTDIR', 'not a directory'];
      throw Object.assign(new Error(`${code}: ${words}, mkdir '${target}'`), { code, path: target, syscall: 'mkdir' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(at) === at) throw err;
      missing.push(at);
    }
  }
  let first: string | undefined;
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
      first ??= d;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(d).isDirectory()) throw err;
    }
  }
  return first;
}
