// Go encoding/json output for a decoded JSON value: map keys sorted at every level, HTML-sensitive
// characters and U+2028/U+2029 escaped, followed by the newline json.Encoder appends. Needed
// byte-for-byte for permissions_hash.
export function goJson(value: unknown): string {
  return `${encode(value)}\n`;
}

function encode(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(encode).join(',')}]`;
  switch (typeof v) {
    case 'string':
      return escapeString(v);
    case 'number':
      return encodeNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      const keys = Object.keys(v as object).sort(byUtf8);
      return `{${keys.map((k) => `${escapeString(k)}:${encode((v as Record<string, unknown>)[k])}`).join(',')}}`;
    }
    default:
      return 'null';
  }
}

/** Go sorts map keys by byte order of their UTF-8 encoding. */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function escapeString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** float64 formatting as Go's encoding/json does ('f' unless the exponent is < -6 or ≥ 21). */
function encodeNumber(n: number): string {
  if (!Number.isFinite(n)) return 'null';
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-6 || abs >= 1e21)) {
    // Go: strconv 'e' format then trims "e-07" → "e-7".
    return n.toExponential().replace(/e([+-])(\d)$/, 'e$10$2').replace(/e([+-])0(\d)$/, 'e$1$2');
  }
  return String(n);
}
