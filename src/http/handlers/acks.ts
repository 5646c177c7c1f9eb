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

export interface AckAnswer {
  status: number;
  body: Record<string, unknown>;
  retryAfter?: number;
  /** The failed items' classifications, with their errors, for the log. */
  failures: { error: unknown; c: ErrorClass }[];
}

/** Upstream's AckResponse: the HTTP status is the highest item status, whose Retry-After (if any) goes along. */
export function ackAnswer(outcomes: AckOutcome[]): AckAnswer {
  const items = outcomes.map(itemOf);
  const failures = outcomes.flatMap((o, i) => (o.kind === 'failed' ? [{ error: o.error, c: items[i]!.failure! }] : []));
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
  // Failed items are answered, not thrown: each is logged here with its classified level.
  for (const { error, c } of answer.failures) {
    ctx.log[c.level]({ err: error, 'fleet.agent.id': ctx.agent._id, 'http.response.status_code': c.status }, 'ack item failed');
  }
  writeJsonText(ctx.res, answer.status, JSON.stringify(answer.body),
    answer.retryAfter === undefined ? undefined : { 'Retry-After': String(answer.retryAfter) });
}
