// What counts as a credential inside a configuration or a Fleet document, and how it is hidden when
// shown: in an agent's diagnostics bundle, and in the admin CLI's output (terminal scroll-back, CI logs,
// tickets). The embedded store seals values under SECRET_NAME at rest (store/sqlite/sealed-fields.ts).
import { SECRET_REFERENCE } from '../store/port';

/** Names whose values are credentials: outputs' keys and tokens, TLS keys, a MIGRATE action's token, cloud keys. */
export const SECRET_NAME = /^(api_key|service_token|enrollment_token|key|key_passphrase|password|passphrase|secret_token|token_key|secret_access_key|session_token|client_secret|bearer_token)$/i;

/**
 * What is hidden when shown goes further than what is sealed: integration inputs name their credentials
 * freely (`access_token`, `db_password`, `private_key`). Identifiers of secrets (`…_id`, `…_ids`, a
 * policy's `secret_references`) are not secrets and stay readable.
 */
const SECRET_WORD = /password|passphrase|secret|token|private_key|credential|authorization|cookie/i;
const NOT_SECRET = /(_ids?|_references)$|^routekey$/i;

export const REDACTED = '[REDACTED]';
/** Keys whose values are URLs, or lists of them, that may carry user:password@ without a scheme. */
const URL_KEYS = /^(hosts|proxy_url)$/i;
/** Any other value that is a URL with user information (a MIGRATE action's target_uri, a download source). */
const URL_WITH_USER = /^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]*@/i;

function isSecretName(k: string): boolean {
  return SECRET_NAME.test(k) || (SECRET_WORD.test(k) && !NOT_SECRET.test(k));
}

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
  if (typeof v === 'string') return URL_WITH_USER.test(v) ? redactUrl(v) : v;
  if (Array.isArray(v)) return v.map(redact);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => {
    if (isSecretName(k) || /^proxy_headers$/i.test(k)) return [k, hidden(x)];
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

/** An empty value says "none", and a secret reference names one (as Kibana shows it): both stay as they are. */
function hidden(x: unknown): unknown {
  if (x === '' || x === null || x === undefined) return x;
  if (typeof x === 'string' && SECRET_REFERENCE.test(x)) return x;
  return REDACTED;
}
