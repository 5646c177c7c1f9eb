// node:fs/promises, read at its first use rather than imported: loading it loads readline and the file
// watchers with it (0.5 MiB more RSS in an idle server, measured on Node 24.21), and most processes never
// touch a file after start (uploads, the PGP key and the store's flushes are the callers).
let fsp: typeof import('node:fs/promises') | undefined;

export function fsAsync(): typeof import('node:fs/promises') {
  return (fsp ??= require('node:fs/promises') as typeof import('node:fs/promises'));
}
