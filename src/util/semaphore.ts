// A counting semaphore: at most `max` holders at once, the rest wait in order.
export class Semaphore {
  private held = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.held >= this.max) await new Promise<void>((r) => this.queue.push(r));
    else this.held++;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.held--;
    }
  }
}
