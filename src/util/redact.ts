// What counts as a credential inside a configuration or a Fleet document, and how it is hidden when
// shown: in an agent's diagnostics bundle, and in the admin CLI's output (terminal scroll-back, CI logs,
// tickets). The embedded store seals values under the same names at rest (store/sqlite/sealed-fields.ts).

/** Names whose values are credentials: outputs' keys and tokens, TLS keys, a MIGRATE action's token, cloud keys. */
export const SECRET_NAME = /^(api_key|service_token|enrollment_token|key|key_passphrase|password|passphrase|secret_token|token_key|secret_access_key|session_token|client_secret|bearer_token)$/i;

export const REDACTED = '[REDACTED]';
/** Keys whose values are URLs, or lists of them, that may carry user:password@. */
const URL_KEYS = /^(hosts|proxy_url)$/i;
/**
 * A Fleet secret reference (`$co.elastic.secret{<id>}`) names a secret, it is not one: it stays
 * readable, as Kibana shows it.
 */
const SECRET_REF = /^\$co\.elastic\.secret\{[^}]*\}$/;

/**
 * A URL's user:password@ (with or without a scheme) becomes [REDACTED]@: the host stays readable, the
 * credentials do not.
 */
export function redactUrl(url: string): string {
  // Up to the authority's last @: an unencoded @ in a password must not leave its tail behind.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/?#\s]+@/i, `$1${REDACTED}@`);
}

/**
 * A copy of `v` with every credential replaced, at any depth. Every `headers` value is redacted, names
 * kept: upstream's RedactOutput redacts only names containing auth, token, key or bearer, which passes
 * Cookie, X-Secret and whatever a gateway in front of Elasticsearch invents, and a header's value tells
 * little when diagnosing. proxy_headers go as a whole (Proxy-Authorization, a proxy's own tokens).
 */
export function redact(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redact);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => {
    if (SECRET_NAME.test(k) || /^proxy_headers$/i.test(k)) return [k, hidden(x)];
    if (k === 'headers' && x !== null && typeof x === 'object' && !Array.isArray(x)) {
      return [k, Object.fromEntries(Object.keys(x).map((name) => [name, REDACTED]))];
    }
    if (URL_KEYS.test(k)) {
      if (typeof x === 'string') return [k, redactUrl(x)];
      if (Array.isArray(x)) return [k, x.map((h) => (typeof h === 'string' ? redactUrl(h) : redact(h)))];
    }
    return [k, redact(x)];
  }));
}

/** An empty value says "none", and a secret reference names one: both stay as they are. */
function hidden(x: unknown): unknown {
  if (x === '' || x === null || x === undefined) return x;
  if (typeof x === 'string' && SECRET_REF.test(x)) return x;
  return REDACTED;
}
