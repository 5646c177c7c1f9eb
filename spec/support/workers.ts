// Reading a cluster of workers from outside: the primary's summed /stats, polled until a condition
// holds (no fixed sleeps), and the workers' own views in it.
import { request } from './http';

export interface WorkerView { slot: number; pid: number; status: string; checkin: { held: number } }

export async function stats(metricsPort: number): Promise<any> {
  return (await request(`http://127.0.0.1:${metricsPort}/stats`)).json;
}

/** Polls /stats until `ok` holds for it (as soon as the server gets there). */
export async function statsUntil(metricsPort: number, ok: (s: any) => boolean, what: string): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const s = await stats(metricsPort);
    if (ok(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
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
