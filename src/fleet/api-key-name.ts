// Elasticsearch's bounds on an API key's name (CreateApiKeyRequest.validate): an agent id is one (its
// access key is named after it), and so is an enrollment token's name. Checked before a key is minted,
// so a name the cluster would refuse is the client's 400 (or the admin's error), not a 500.

/** At most this many characters (UTF-16 units, as Java counts them). */
export const API_KEY_NAME_MAX_CHARS = 256;
/** What Java's trim() cuts (characters up to U+0020) at either end. */
const TRIMMED_BY_JAVA = /^[\u0000-\u0020]|[\u0000-\u0020]$/;
/** Control characters and lone surrogates: refused here also to keep them out of logs. */
export const CONTROL = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;

/** Whether Elasticsearch takes `name` as an API key's name (and it holds no control characters). */
export function apiKeyNameFits(name: string): boolean {
  return name.length > 0 && name.length <= API_KEY_NAME_MAX_CHARS && !CONTROL.test(name) && !name.startsWith('_') && !TRIMMED_BY_JAVA.test(name);
}
