/**
 * The redraw half of `twill status --watch`, the same for etcd (watch.ts)
 * and Kubernetes (kube-watch.ts): one look at a time, a change seen
 * meanwhile runs one more; a failed look is said once on `warn` and retried
 * every RETRY_MS while the last picture stays on screen; the recovery is
 * said once too. What a look reads and what it draws is the subclass's.
 */
export const RETRY_MS = 2000;

export interface RefreshLoopOptions {
  /** A change of connectivity, or a failed look, once per distinct message. */
  readonly warn: (message: string) => void;
  readonly signal: AbortSignal;
}

export abstract class RefreshLoop {
  private timer?: NodeJS.Timeout;
  private refreshing = false;
  private again = false;
  private lastWarning = '';
  /** A look (or the subclass's watch) failed since the last good look. */
  protected failing = false;

  constructor(private readonly loop: RefreshLoopOptions) {}

  /** Reads the cluster and draws it; rejects when it cannot read. */
  protected abstract look(): Promise<void>;
  /** Said once when a look succeeds after failures. */
  protected abstract readonly answersAgain: string;

  protected schedule(ms: number): void {
    if (this.loop.signal.aborted) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), ms);
  }

  protected stopScheduling(): void {
    clearTimeout(this.timer);
  }

  protected async refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    try {
      await this.look();
      if (this.loop.signal.aborted) return;
      if (this.failing) this.say(this.answersAgain);
      this.failing = false;
      this.lastWarning = '';
    } catch (err) {
      if (this.loop.signal.aborted) return;
      this.failing = true;
      this.say(`${(err as Error).message}; retrying every ${RETRY_MS / 1000} s`);
      this.schedule(RETRY_MS);
    } finally {
      this.refreshing = false;
      if (this.again) {
        this.again = false;
        this.schedule(0);
      }
    }
  }

  protected say(message: string): void {
    if (message === this.lastWarning) return;
    this.lastWarning = message;
    this.loop.warn(message);
  }
}
