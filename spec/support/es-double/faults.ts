// Fault injection: latency, error statuses (whole request or per bulk item) on chosen calls.
export interface FaultRule {
  /** Route kind ("bulk", "search", "authenticate", …) or a regular expression source over "METHOD /path". */
  match: string;
  /** Answer with this status (429 es_rejected_execution_exception, 503 unavailable, …) instead of serving. */
  status?: number;
  /** With `_bulk`: fail every item with this status instead of the request. */
  itemStatus?: number;
  /**
   * With `status`: serve the request first, then answer with the status (a gateway timing out, or the
   * connection lost, after the write landed).
   */
  afterServing?: boolean;
  /** Answer with this body, as JSON (and as Elasticsearch's product), with `status` or 200: a proxy's page that is not JSON. */
  rawBody?: string;
  /** With `_bulk`: fail only items whose `_id` is in this list (with `itemStatus`). */
  itemIds?: string[];
  /** Delay before serving. */
  delayMs?: number;
  /** How many requests the rule applies to (default: until removed). */
  times?: number;
}

export class Faults {
  private rules: FaultRule[] = [];

  add(rule: FaultRule): void {
    this.rules.push({ ...rule });
  }

  clear(): void {
    this.rules = [];
  }

  /** The rule that applies to this request, consuming one of its `times`. */
  take(kind: string, method: string, path: string): FaultRule | undefined {
    const line = `${method} ${path}`;
    const rule = this.rules.find((r) => r.match === kind || (r.match.length > 0 && !/^[a-z_]+$/.test(r.match) && new RegExp(r.match).test(line)));
    if (!rule) return undefined;
    if (rule.times !== undefined && --rule.times <= 0) this.rules = this.rules.filter((r) => r !== rule);
    return rule;
  }
}
