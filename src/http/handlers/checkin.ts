import type { ServerResponse } from 'node:http';
import type { FleetServerConfig } from '../../config/config';
import type { CheckinResult, PollOutcome } from '../../fleet/checkin';
import type { CheckinRequest } from '../../fleet/messages';
import { releaseHeaders } from '../request';
import type { BaseContext, RequestContext } from '../route';
import { acceptsGzip, writeFilledMaybeGzip, writeJsonMaybeGzip, type CompressionOptions } from '../respond';

/**
 * A held poll's answer: written when the poll ends; the request's promise is settled once set-up has
 * ended too. One object holding only the response and what the answer needs: nothing of the request
 * outlives set-up (a closure made beside the request's context would keep it, body and all, for the
 * poll's life: 5 KiB more JS heap per held agent, measured).
 */
class CheckinAnswer implements PollOutcome {
  /** Ends the poll when the client goes away; listened for from the start of the check-in. */
  cancel: (() => void) | undefined;
  done = false;
  private setUpEnded = false;
  /** The poll's end, kept until set-up has ended too. */
  private ended: { ok: true } | { ok: false; err: unknown } | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly gzip: boolean,
    private readonly config: FleetServerConfig,
    private readonly resolve: () => void,
    private readonly reject: (err: unknown) => void,
  ) {}

  /**
   * From the first moment: a client that goes away while set-up still waits for the store ends its poll
   * then, not once set-up is done (fleet/checkin.ts: the poll's deadline also runs from here).
   */
  started(cancel: () => void): void {
    this.cancel = cancel;
    this.res.on('close', cancel);
  }

  settle(err: unknown, result?: CheckinResult): void {
    this.done = true;
    if (this.cancel) this.res.off('close', this.cancel);
    if (!result) {
      this.end({ ok: false, err });
      return;
    }
    try {
      writeResult(this.res, this.gzip, result, this.config);
    } catch (failure) {
      this.end({ ok: false, err: failure });
      return;
    }
    this.end({ ok: true });
  }

  /**
   * Set-up ended (`err`: it failed before the poll began). The request ends now if the poll has: a poll
   * ended by its deadline or the client's close while set-up still waited for the store would otherwise
   * give its route slot back with set-up work still running (piling up past the route's `max`), and a
   * drain could flush the bookkeeping before set-up recorded the check-in.
   */
  setUpDone(err?: unknown): void {
    this.setUpEnded = true;
    const ended = this.ended ?? (err === undefined ? undefined : { ok: false as const, err });
    this.ended = undefined;
    if (ended) this.finish(ended);
  }

  private end(outcome: { ok: true } | { ok: false; err: unknown }): void {
    if (this.setUpEnded) this.finish(outcome);
    else this.ended = outcome;
  }

  private finish(outcome: { ok: true } | { ok: false; err: unknown }): void {
    if (outcome.ok) this.resolve();
    else this.reject(outcome.err);
  }
}

/** POST /api/fleet/agents/{id}/checkin: the long poll. */
export function handleCheckin(ctx: RequestContext<'agent', CheckinRequest>): Promise<void> {
  const gzip = acceptsGzip(ctx.req);
  return new Promise((resolve, reject) => {
    const answer = new CheckinAnswer(ctx.res, gzip, ctx.config, resolve, reject);
    const { fleet, body } = ctx;
    fleet.checkins.begin(ctx.agent, ctx.agentVersion, body, fleet.checkins.pollDuration(body.poll_timeout), answer)
      .then((cancel) => {
        setUp(ctx, answer, cancel);
        answer.setUpDone();
      }, (err: unknown) => answer.setUpDone(err));
    // Gone before the poll began (its close came before anyone listened): ended at once, set-up or not.
    if (!answer.done && ctx.req.socket.destroyed) answer.cancel?.();
  });
}

/** Set-up is done: the headers go; a client that went away unheard ends its poll. */
function setUp(ctx: RequestContext<'agent', CheckinRequest>, answer: CheckinAnswer, cancel: () => void): void {
  releaseHeaders(ctx.req);
  if (!answer.done && ctx.req.socket.destroyed) cancel();
}

function compressionOf(config: FleetServerConfig): CompressionOptions {
  return { level: config.server.compressionLevel, threshold: config.server.compressionThreshold };
}

function writeResult(res: ServerResponse, gzip: boolean, result: CheckinResult, config: FleetServerConfig): void {
  const compression = compressionOf(config);
  const head = `{"ack_token":${JSON.stringify(result.ackToken)},"action":"checkin"`;
  if (result.policy) {
    writeFilledMaybeGzip(res, gzip, { head: `${head},"actions":[`, ...result.policy, tail: ']}' }, compression);
    return;
  }
  const text = result.actionsJson === undefined ? `${head}}` : `${head},"actions":${result.actionsJson}}`;
  writeJsonMaybeGzip(res, gzip, 200, text, compression);
}

/**
 * A check-in whose key was refused, answered as graceful force-unenroll says (fleet/graceful-unenroll.ts):
 * an empty policy, then an UNENROLL; false lets the refusal (401) stand.
 */
export function answerRefusedCheckin(ctx: BaseContext, refusal: unknown): boolean {
  const actions = ctx.fleet.gracefulUnenroll.answer(ctx.params['id'] ?? '', refusal);
  if (!actions) return false;
  // The body was not read: the connection closes after this answer rather than parse it as a request.
  if (!ctx.req.complete) ctx.res.shouldKeepAlive = false;
  writeJsonMaybeGzip(ctx.res, acceptsGzip(ctx.req), 200, JSON.stringify({ ack_token: '', action: 'checkin', actions }), compressionOf(ctx.config));
  return true;
}
