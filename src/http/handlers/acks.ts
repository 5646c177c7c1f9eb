import type { AckOutcome } from '../../fleet/acks';
import type { AckRequest } from '../../fleet/messages';
import { classify, type ErrorClass } from '../errors';
import type { RequestContext } from '../route';
import { writeJsonText } from '../respond';

interface Item {
  status: number;
  message: string;
  /** The classification of a failed item. */
  failure?: ErrorClass;
}

/** Each outcome as upstream's item; a failure carries its classified status (store busy 429, down 503). */
function itemOf(o: AckOutcome): Item {
  switch (o.kind) {
    case 'ok': return { status: 200, message: 'OK' };
    case 'wrongAgent': return { status: 400, message: 'Bad Request' };
    // As the item upstream answers for an event it cannot use: the status text only.
    case 'invalid': return { status: 400, message: 'Bad Request' };
    case 'unknownAction': return { status: 404, message: 'Not Found' };
    case 'failed': {
      const c = classify(o.error);
      return { status: c.status, message: c.message, failure: c };
    }
  }
}

export interface AckAnswer {
  status: number;
  body: Record<string, unknown>;
  retryAfter?: number;
  /** The failed items' classifications, with their errors, for the log: each error once, with how many items it failed. */
  failures: { error: unknown; c: ErrorClass; items: number }[];
  /** Why items were refused (the agent's mistakes, which the answer names only by status), each reason once with its count. */
  refused: { reason: string; items: number }[];
}

/** The log's words for an item refused as the agent's mistake; undefined for any other outcome. */
function refusalOf(o: AckOutcome): string | undefined {
  switch (o.kind) {
    case 'wrongAgent': return 'agent id mismatch';
    case 'invalid': return o.reason;
    case 'unknownAction': return 'action not found';
    default: return undefined;
  }
}

/** Upstream's AckResponse: the HTTP status is the highest item status, whose Retry-After (if any) goes along. */
export function ackAnswer(outcomes: AckOutcome[]): AckAnswer {
  const items = outcomes.map(itemOf);
  // One failed write or lookup can fail thousands of items (events of one request naming the same action):
  // logged once, not once per item.
  const byError = new Map<unknown, { error: unknown; c: ErrorClass; items: number }>();
  outcomes.forEach((o, i) => {
    if (o.kind !== 'failed') return;
    const seen = byError.get(o.error);
    if (seen) seen.items++;
    else byError.set(o.error, { error: o.error, c: items[i]!.failure!, items: 1 });
  });
  const failures = [...byError.values()];
  // The reasons are this server's fixed words, a handful at most, however many events name them.
  const refused = new Map<string, number>();
  for (const o of outcomes) {
    const reason = refusalOf(o);
    if (reason !== undefined) refused.set(reason, (refused.get(reason) ?? 0) + 1);
  }
  let worst: Item | undefined;
  for (const it of items) if (!worst || it.status > worst.status) worst = it;
  const status = worst?.status ?? 200;
  const body: Record<string, unknown> = { action: 'acks' };
  if (status !== 200) body['errors'] = true;
  if (items.length > 0) body['items'] = items.map((it) => ({ status: it.status, message: it.message }));
  const retryAfter = worst?.failure?.retryAfter;
  const why = [...refused].map(([reason, n]) => ({ reason, items: n }));
  return retryAfter === undefined ? { status, body, failures, refused: why } : { status, body, retryAfter, failures, refused: why };
}

/** POST /api/fleet/agents/{id}/acks */
export async function handleAcks(ctx: RequestContext<'agent', AckRequest>): Promise<void> {
  const answer = ackAnswer(await ctx.fleet.acks.ack(ctx.agent, ctx.body.events ?? []));
  // Failed items are answered, not thrown: each error is logged here once, with its classified level.
  for (const { error, c, items } of answer.failures) {
    ctx.log[c.level]({ err: error, 'fleet.agent.id': ctx.agent._id, 'http.response.status_code': c.status, items }, 'ack item failed');
  }
  for (const { reason, items } of answer.refused) {
    ctx.log.info({ 'fleet.agent.id': ctx.agent._id, reason, items }, 'ack items refused');
  }
  writeJsonText(ctx.res, answer.status, JSON.stringify(answer.body),
    answer.retryAfter === undefined ? undefined : { 'Retry-After': String(answer.retryAfter) });
}
