// A cluster's stop in two steps: every worker closes its listeners, and only then do they answer their
// held polls. A worker answering first sends its agents to reconnect while another worker's listener is
// still open: with SO_REUSEPORT the kernel deals them to it, they wait in its accept queue (libuv takes one
// connection a turn of the event loop, and a draining worker's turns are long), and that listener's close
// resets each of them (in bench restarts at 100,000 agents: 4, 4 and 4,099 agents, the last after 1,792
// attempts overflowed that queue; none in two runs since). With every listener closed first, an agent
// answered early finds no listener: refused, and retried after its back-off, as a restart means. A worker
// waits for the word at most OTHERS_CLOSED_WAIT_MS (a worker blocked for seconds holds no one up).
// A worker stopped alone (a signal to its pid) thus answers up to that much late (see the class below):
// the price of not mistaking the first worker a group signal reaches for one stopped alone.

/** The longest a worker waits for the others to close their listeners before answering its polls. */
export const OTHERS_CLOSED_WAIT_MS = 1000;

/**
 * The primary's side: who has closed, and the word to answer, given to each once all have. A worker that
 * closes before the whole stop began is held up to `holdMs` first: a signal to the process group (systemd's
 * default KillMode=control-group, Ctrl-C) reaches every process at once, and that worker's handler may
 * simply have run before the primary's. Only if no whole stop begins meanwhile was it stopped alone.
 */
export class ListenersClosedBarrier<W> {
  /** Before the whole server's stop, 'serving'; then 'closing' until every listener is closed; then 'closed'. */
  private phase: 'serving' | 'closing' | 'closed' = 'serving';
  /** While closing: the workers whose listeners are still open. */
  private readonly open = new Set<W>();
  private readonly waiting = new Set<W>();
  /** Closed while serving, not yet told: they join the whole stop if it begins before their hold ends. */
  private readonly held = new Map<W, ReturnType<typeof setTimeout>>();
  /** Closed while serving and told to answer: stopped alone, so nobody waits for their listeners. */
  private readonly alone = new Set<W>();

  /** `answer(w)`: tell w to answer its polls now. */
  constructor(private readonly answer: (w: W) => void, private readonly holdMs = OTHERS_CLOSED_WAIT_MS) {}

  /** The whole server stops: these workers' listeners are open (or about to be: one still starting listens before it is ready). */
  begin(open: Iterable<W>): void {
    if (this.phase !== 'serving') return;
    this.phase = 'closing';
    for (const w of open) if (!this.alone.has(w) && !this.held.has(w)) this.open.add(w);
    for (const [w, timer] of this.held) {
      clearTimeout(timer);
      this.waiting.add(w);
    }
    this.held.clear();
    this.release();
  }

  /** w closed its listeners. */
  closed(w: W): void {
    if (this.phase === 'closed') return this.answer(w);
    if (this.phase === 'serving') {
      if (this.held.has(w) || this.alone.has(w)) return;
      const timer = setTimeout(() => {
        this.held.delete(w);
        this.alone.add(w);
        this.answer(w);
      }, this.holdMs);
      timer.unref?.();
      this.held.set(w, timer);
      return;
    }
    this.open.delete(w);
    this.waiting.add(w);
    this.release();
  }

  /** w exited: nobody waits for it, and it waits for nothing. */
  gone(w: W): void {
    clearTimeout(this.held.get(w));
    this.held.delete(w);
    this.alone.delete(w);
    this.waiting.delete(w);
    if (this.open.delete(w)) this.release();
  }

  private release(): void {
    if (this.phase !== 'closing' || this.open.size > 0) return;
    for (const w of this.waiting) this.answer(w);
    this.waiting.clear();
    // Every listener is closed: a worker that says so later (one that was still starting) answers at once.
    this.phase = 'closed';
  }
}
