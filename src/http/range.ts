// The Range header of file delivery, as upstream's handleFileDelivery.go reads it (its parseRange is
// Go's http/fs.go one): one `bytes=` range → 206; a malformed or unsatisfiable range → 416; several
// ranges → 416 (upstream does not send multipart answers). Empty elements (`bytes=0-1,`) are skipped,
// as Go skips them; a header of none asks for the whole file.
import type { ByteRange } from '../fleet/file-delivery';
import { HttpError } from './errors';

function notSatisfiable(size: number, message = 'range not satisfiable'): HttpError {
  return new HttpError('RangeNotSatisfiable', message, { 'Content-Range': `bytes */${size}` });
}

/** textproto.TrimString: ASCII white space only. */
const trim = (s: string): string => s.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');

/** The range asked for within a file of `size` bytes; undefined for the whole file. */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined || header === '') return undefined;
  if (!header.startsWith('bytes=')) throw notSatisfiable(size);
  const specs = header.slice(6).split(',').map(trim).filter((s) => s !== '');
  if (specs.length === 0) return undefined;
  if (specs.length > 1) throw notSatisfiable(size, 'Multipart ranges not satisfiable');
  const m = /^(\d*)[ \t]*-[ \t]*(\d*)$/.exec(specs[0]!);
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
