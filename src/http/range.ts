// The Range header of file delivery, as Go's http.ServeContent reads it (upstream serves files with
// it): one `bytes=` range → 206; a malformed or unsatisfiable range → 416; several ranges → 416
// (upstream does not send multipart answers).
import type { ByteRange } from '../fleet/file-delivery';
import { HttpError } from './errors';

function notSatisfiable(size: number, message = 'range not satisfiable'): HttpError {
  return new HttpError('RangeNotSatisfiable', message, { 'Content-Range': `bytes */${size}` });
}

/** The range asked for within a file of `size` bytes; undefined for the whole file. */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined || header === '') return undefined;
  if (!header.startsWith('bytes=')) throw notSatisfiable(size);
  const specs = header.slice(6).split(',');
  if (specs.length > 1) throw notSatisfiable(size, 'Multipart ranges not satisfiable');
  const m = /^\s*(\d*)-(\d*)\s*$/.exec(specs[0]!);
  if (!m || (m[1] === '' && m[2] === '')) throw notSatisfiable(size);
  let start: number;
  let end: number;
  if (m[1] === '') {
    // A suffix: the last N bytes.
    const n = Number(m[2]);
    if (n === 0) throw notSatisfiable(size);
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (!Number.isSafeInteger(start) || start >= size || (m[2] !== '' && Number(m[2]) < start)) throw notSatisfiable(size);
  }
  if (size === 0) throw notSatisfiable(size);
  return { start, end };
}
