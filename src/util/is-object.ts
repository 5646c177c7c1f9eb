/** A JSON object (not null, not an array): what a decoded document's nested objects are. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
