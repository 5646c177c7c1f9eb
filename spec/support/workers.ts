// Reading a cluster of workers from outside: the primary's summed /stats, polled until a condition
// holds (no fixed sleeps), and the workers' own views in it.
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { SimAgent } from './agent';
import { freshStats } from './stats';

export interface WorkerView { slot: number; pid: number; status: string; checkin: { held: number } }

export async function stats(metricsPort: number): Promise<any> {
  return freshStats(`http://127.0.0.1:${metricsPort}/stats`);
}

/** Polls /stats until `ok` holds for it (as soon as the server gets there). */
export async function statsUntil(metricsPort: number, ok: (s: any) => boolean, what: string): Promise<any> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
    const s = await stats(metricsPort);
    if (ok(s)) return s;
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify((await stats(metricsPort)).fleet)}`);
}

export const workersOf = (s: any): WorkerView[] => s.fleet.workers as WorkerView[];

/** Whether a process with this pid still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** An answer, or the error the client saw (a reset when its worker died). */
export type Outcome = { status: number; json: any } | { error: string };

/** Simulated agents spread over a cluster's workers (each opens a new connection per request). */
export class AgentPool {
  readonly agents: SimAgent[] = [];

  constructor(private readonly url: string, private readonly token: string, private readonly metricsPort: number) {}

  /** Enrolls one agent and takes its first policy. */
  async enrollOne(): Promise<SimAgent> {
    const a = new SimAgent(this.url);
    expect((await a.enroll(this.token)).status).toBe(200);
    const first = await a.checkin();
    expect(first.json.actions.map((x: any) => x.type)).toEqual(['POLICY_CHANGE']);
    this.agents.push(a);
    return a;
  }

  /** A held poll on revision `rev`, settled with its answer or its error. */
  poll(agent: SimAgent, rev: number): Promise<Outcome> {
    return agent.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: rev }, { timeoutMs: 90_000 })
      .catch((e: Error) => ({ error: String(e.message) }));
  }

  /**
   * Every agent holds a poll on `rev`, and every worker holds some (dealing is in turn, not by count,
   * so agents are added while one worker has none). Returns the polls and the stats that showed it.
   */
  async holdOnEveryWorker(rev: number): Promise<{ held: Promise<Outcome>[]; stats: any }> {
    const held = this.agents.map((a) => this.poll(a, rev));
    const allHeld = (): Promise<any> => statsUntil(this.metricsPort, (s) => s.fleet.checkin.held === this.agents.length, 'every poll held');
    let s = await allHeld();
    while (workersOf(s).some((w) => w.checkin.held === 0) && this.agents.length < 40) {
      held.push(this.poll(await this.enrollOne(), rev));
      s = await allHeld();
    }
    expect(workersOf(s).every((w) => w.checkin.held > 0)).toBe(true);
    return { held, stats: s };
  }
}

/** The nice values of a process's threads (Linux: /proc/<pid>/task), distinct and sorted. */
export function threadNice(pid: number): number[] {
  const nice = readdirSync(`/proc/${pid}/task`).flatMap((t) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
    } catch {
      return []; // a thread that ended meanwhile
    }
    return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
  });
  return [...new Set(nice)].sort((a, b) => a - b);
}

/** A worker's nice on the embedded store: five steps below the primary's, which is the test runner's (runtime/worker-priority.ts). */
export const EMBEDDED_WORKER_NICE = Math.min(19, getPriority(0) + 5);
