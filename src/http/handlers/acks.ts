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
  let worst: Item | undefined;
  for (const it of items) if (!worst || it.status > worst.status) worst = it;
  const status = worst?.status ?? 200;
  const body: Record<string, unknown> = { action: 'acks' };
  if (status !== 200) body['errors'] = true;
  if (items.length > 0) body['items'] = items.map((it) => ({ status: it.status, message: it.message }));
  const retryAfter = worst?.failure?.retryAfter;
  return retryAfter === undefined ? { status, body, failures } : { status, body, retryAfter, failures };
}

/** POST /api/fleet/agents/{id}/acks */
export async function handleAcks(ctx: RequestContext<'agent', AckRequest>): Promise<void> {
  const answer = ackAnswer(await ctx.fleet.acks.ack(ctx.agent, ctx.body.events ?? []));
  // Failed items are answered, not thrown: each error is logged here once, with its classified level.
  for (const { error, c, items } of answer.failures) {
    ctx.log[c.level]({ err: error, 'fleet.agent.id': ctx.agent._id, 'http.response.status_code': c.status, items }, 'ack item failed');
  }
  writeJsonText(ctx.res, answer.status, JSON.stringify(answer.body),
    answer.retryAfter === undefined ? undefined : { 'Retry-After': String(answer.retryAfter) });
}
