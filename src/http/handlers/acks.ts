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
    case 'unknownAction': return { status: 404, message: 'Not Found' };
    case 'failed': {
      const c = classify(o.error);
      return { status: c.status, message: c.message, failure: c };
    }
  }
}

/** Upstream's AckResponse: the HTTP status is the highest item status, whose Retry-After (if any) goes along. */
export function ackAnswer(outcomes: AckOutcome[]): { status: number; body: Record<string, unknown>; retryAfter?: number } {
  const items = outcomes.map(itemOf);
  let worst: Item | undefined;
  for (const it of items) if (!worst || it.status > worst.status) worst = it;
  const status = worst?.status ?? 200;
  const body: Record<string, unknown> = { action: 'acks' };
  if (status !== 200) body['errors'] = true;
  if (items.length > 0) body['items'] = items.map((it) => ({ status: it.status, message: it.message }));
  const retryAfter = worst?.failure?.retryAfter;
  return retryAfter === undefined ? { status, body } : { status, body, retryAfter };
}

/** POST /api/fleet/agents/{id}/acks */
export async function handleAcks(ctx: RequestContext<'agent', AckRequest>): Promise<void> {
  const outcomes = await ctx.fleet.acks.ack(ctx.agent, ctx.body.events ?? []);
  // Failed items are answered, not thrown: each is logged here with its classified level.
  for (const o of outcomes) {
    if (o.kind !== 'failed') continue;
    const c = classify(o.error);
    ctx.log[c.level]({ err: o.error, 'fleet.agent.id': ctx.agent._id, 'http.response.status_code': c.status }, 'ack item failed');
  }
  const answer = ackAnswer(outcomes);
  writeJsonText(ctx.res, answer.status, JSON.stringify(answer.body),
    answer.retryAfter === undefined ? undefined : { 'Retry-After': String(answer.retryAfter) });
}
