/**
 * Runs one reconcile at a time. A request that arrives while one runs
 * marks the state dirty, and exactly one more run follows, so bursts of
 * lease events cost two reconciles, not one per event.
 */
export class ReconcileLoop {
  private running = false;
  private dirty = false;
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();

  constructor(private readonly run: (reason: string) => Promise<void>) {}

  request(reason: string): void {
    if (this.stopped) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    this.running = true;
    this.idle = this.drain(reason);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.idle;
  }

  private async drain(reason: string): Promise<void> {
    let why = reason;
    try {
      for (;;) {
        this.dirty = false;
        await this.run(why);
        if (!this.dirty || this.stopped) break;
        why = 'changes during the last reconcile';
      }
    } finally {
      this.running = false;
    }
  }
}
