// The query bodies the Elasticsearch store sends, as upstream's dsl package builds them.
type Obj = Record<string, unknown>;

export const term = (field: string, value: unknown): Obj => ({ term: { [field]: value } });

export const filter = (...clauses: Obj[]): Obj => ({ bool: { filter: clauses } });

/** Newest revision of every policy: a terms aggregation with a top hit by revision_idx. */
export const LATEST_POLICIES: Obj = {
  size: 0,
  aggs: {
    policy_id: {
      terms: { field: 'policy_id', size: 10000 },
      aggs: { revision_idx: { top_hits: { size: 1, sort: [{ revision_idx: 'desc' }], seq_no_primary_term: true } } },
    },
  },
};

export function pendingActions(agentId: string, afterSeqNo: number, checkpoint: number, nowIso: string, size: number): Obj {
  return {
    seq_no_primary_term: true,
    query: filter(
      { range: { _seq_no: { gt: afterSeqNo } } },
      { range: { _seq_no: { lte: checkpoint } } },
      { range: { expiration: { gt: nowIso } } },
      { terms: { agents: [agentId] } },
    ),
    sort: ['_seq_no'],
    size,
    _source: { excludes: ['agents'] },
  };
}
