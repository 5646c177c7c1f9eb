/** A failed entry of an _mget, _msearch or _bulk answer, with the status Elasticsearch gave that item. */
export class EsItemError extends Error {
  override readonly name = 'EsItemError';
  constructor(readonly status: number, readonly type: string, reason: string) {
    super(`${type}: ${reason}`);
  }
}
