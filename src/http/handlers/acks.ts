import type { AckOutcome } from '../../fleet/acks';
import type { AckRequest } from '../../fleet/messages';
import { classify } from '../errors';
import type { RequestContext } from '../route';
import { writeJsonText } from '../respond';

interface Item {
  status: number;
  message: string;
}

/** Each outcome as upstream's item; a failure carries its classified status (store busy 429, down 503). */
function itemOf(o: AckOutcome): Item & { retryAfter?: number } {
  switch (o.kind) {
    case 'ok': return { status: 200, message: 'OK' };
    case 'wrongAgent': return { status: 400, message: 'Bad Request' };
    case 'unknownAction': return { status: 404, message: 'Not Found' };
    case 'failed': {
      const c = classify(o.error);
      return { status: c.status, message: c.message, retryAfter: c.retryAfter };
    }
  }
}

/** Upstream's AckResponse: the HTTP status is the highest item status, whose Retry-After (if any) goes along. */
export function ackAnswer(outcomes: AckOutcome[]): { status: number; body: Record<string, unknown>; retryAfter?: number } {
  const items = outcomes.map(itemOf);
  let worst: (Item & { retryAfter?: number }) | undefined;
  for (const it of items) if (!worst || it.status > worst.status) worst = it;
  const status = worst?.status ?? 200;
  const body: Record<string, unknown> = { action: 'acks' };
  if (status !== 200) body['errors'] = true;
  if (items.length > 0) body['items'] = items.map((it) => ({ status: it.status, message: it.message }));
  return worst?.retryAfter === undefined ? { status, body } : { status, body, retryAfter: worst.retryAfter };
}

/** POST /api/fleet/agents/{id}/acks */
export async function handleAcks(ctx: RequestContext<'agent', AckRequest>): Promise<void> {
  const answer = ackAnswer(await ctx.fleet.acks.ack(ctx.agent, ctx.body.events ?? []));
  writeJsonText(ctx.res, answer.status, JSON.stringify(answer.body),
    answer.retryAfter === undefined ? undefined : { 'Retry-After': String(answer.retryAfter) });
}
