// A cluster's stop in two steps: every worker closes its listeners, and only then do they answer their
// held polls. A worker answering first sends its agents to reconnect while another worker's listener is
// still open: with SO_REUSEPORT the kernel deals them to it, they wait in its accept queue (libuv takes one
// connection a turn of the event loop, and a draining worker's turns are long), and that listener's close
// resets each of them (in bench restarts at 100,000 agents: 4, 4 and 4,099 agents, the last after 1,792
// attempts overflowed that queue; none in two runs since). With every listener closed first, an agent
// answered early finds no listener: refused, and retried after its back-off, as a restart means. A worker
// waits for the word at most OTHERS_CLOSED_WAIT_MS (a worker blocked for seconds holds no one up).

/** The longest a worker waits for the others to close their listeners before answering its polls. */
export const OTHERS_CLOSED_WAIT_MS = 1000;

/** The primary's side: who has closed, and the word to answer, given to each once all have. */
export class ListenersClosedBarrier<W> {
  /** While the whole server stops: the workers whose listeners are still open. */
  private open: Set<W> | undefined;
  private readonly waiting = new Set<W>();
  /** Closed before the whole server's stop began (stopped alone, or by a signal to the process group that reached it first). */
  private readonly closedEarly = new Set<W>();

  /** `answer(w)`: tell w to answer its polls now. */
  constructor(private readonly answer: (w: W) => void) {}

  /** The whole server stops: these workers' listeners are open (or about to be: one still starting listens before it is ready). */
  begin(open: Iterable<W>): void {
    this.open = new Set([...open].filter((w) => !this.closedEarly.has(w)));
    this.release();
  }

  /** w closed its listeners. Outside a whole stop (a worker stopped alone) it answers at once. */
  closed(w: W): void {
    if (!this.open) {
      this.closedEarly.add(w);
      this.answer(w);
      return;
    }
    this.open.delete(w);
    this.waiting.add(w);
    this.release();
  }

  /** w exited: nobody waits for it, and it waits for nothing. */
  gone(w: W): void {
    this.waiting.delete(w);
    this.closedEarly.delete(w);
    if (!this.open) return;
    this.open.delete(w);
    this.release();
  }

  private release(): void {
    if (!this.open || this.open.size > 0) return;
    for (const w of this.waiting) this.answer(w);
    this.waiting.clear();
    // Every listener is closed: a worker that says so later (one that was still starting) answers at once.
    this.open = undefined;
  }
}
