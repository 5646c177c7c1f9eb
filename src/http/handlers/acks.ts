import type { AckOutcome } from '../../fleet/acks';
import type { AckRequest } from '../../fleet/messages';
import { classify } from '../errors';
import type { RequestContext } from '../route';
import { writeJsonText } from '../respond';

interface Item {
  status: number;
  message: string;
  retryAfter?: number;
}

/** Each outcome as upstream's item; a failure carries its classified status (store busy 429, down 503). */
function itemOf(o: AckOutcome): Item {
  switch (o.kind) {
    case 'ok': return { status: 200, message: 'OK' };
    case 'wrongAgent': return { status: 400, message: 'Bad Request' };
    case 'unknownAction': return { status: 404, message: 'Not Found' };
    case 'failed': {
      const c = classify(o.error);
      return c.retryAfter === undefined ? { status: c.status, message: c.message } : { status: c.status, message: c.message, retryAfter: c.retryAfter };
    }
  }
}

/** POST /api/fleet/agents/{id}/acks: HTTP status is the highest item status; the body is always AckResponse. */
export async function handleAcks(ctx: RequestContext<'agent', AckRequest>): Promise<void> {
  const items = (await ctx.fleet.acks.ack(ctx.agent, ctx.body.events ?? [])).map(itemOf);
  let worst: Item | undefined;
  for (const it of items) if (!worst || it.status > worst.status) worst = it;
  const status = worst?.status ?? 200;
  const out: Record<string, unknown> = { action: 'acks' };
  if (status !== 200) out['errors'] = true;
  if (items.length > 0) out['items'] = items.map((it) => ({ status: it.status, message: it.message }));
  writeJsonText(ctx.res, status, JSON.stringify(out), worst?.retryAfter !== undefined ? { 'Retry-After': String(worst.retryAfter) } : undefined);
}
