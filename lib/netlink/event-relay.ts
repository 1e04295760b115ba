/**
 * `subscribe()`: kernel change notifications that cannot crash the agent.
 *
 * The notification socket lives in a child process (event-relay-child.ts).
 * If notifications overflow its receive buffer, the `netlink` package aborts
 * that process (see events.ts); the parent then starts a new child and, once
 * the new child listens, delivers a 'resync' event: events were lost and the
 * kernel's state must be read again. Restarts back off from 100 ms to 5 s
 * while children keep dying young.
 *
 * The child runs in the parent's network namespace (namespaces are inherited
 * across fork/exec, including `ip netns exec`). The subscription keeps the
 * event loop alive until unsubscribed.
 */
import { ChildProcess, fork } from 'child_process';
import * as path from 'path';
import type { RelayMessage } from './event-relay-child';
import { EventGroup, EventListener, openEventSocket, Unsubscribe } from './events';

export interface SubscribeOptions {
  /**
   * Run the socket in a child process (default true). false opens it in this
   * process: cheaper, but an overflow of notifications aborts the process.
   */
  isolate?: boolean;
  /** SO_RCVBUF of the notification socket (default 4 MiB; capped by net.core.rmem_max). */
  recvBufferSize?: number;
  /** Only removals and link changes (see EventSocketOptions). */
  deletionsOnly?: boolean;
}

/**
 * Subscribes to `groups`, calling `onEvent` for each notification. Resolves
 * once the kernel delivers to the subscription, so that a change made after
 * the promise resolves is reported. Rejects if the socket cannot be opened.
 */
export function subscribe(groups: EventGroup[], onEvent: EventListener, options: SubscribeOptions = {}): Promise<Unsubscribe> {
  if (options.isolate === false) return Promise.resolve(openEventSocket(groups, onEvent, options));
  return new EventRelay(groups, onEvent, options).start();
}

const CHILD_SCRIPT = path.join(__dirname, 'event-relay-child.js');
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
/** A child that lived this long resets the backoff. */
const HEALTHY_MS = 10_000;

class EventRelay {
  private child: ChildProcess | undefined;
  private closed = false;
  private backoffMs = MIN_BACKOFF_MS;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly groups: EventGroup[],
    private readonly onEvent: EventListener,
    private readonly options: SubscribeOptions,
  ) {}

  start(): Promise<Unsubscribe> {
    return new Promise((resolve, reject) => {
      this.spawn(
        () => resolve(() => this.close()),
        (reason) => { this.closed = true; reject(new Error(`cannot subscribe to netlink events: ${reason}`)); },
      );
    });
  }

  /** Starts a child; `onReady` once it listens, `onEarlyExit` if it dies before. */
  private spawn(onReady: () => void, onEarlyExit: (reason: string) => void): void {
    const args = [JSON.stringify(this.groups), String(this.options.recvBufferSize ?? 0), this.options.deletionsOnly ? 'deletions' : 'all'];
    const child = fork(CHILD_SCRIPT, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [] });
    this.child = child;
    const startedAt = Date.now();
    let ready = false;
    let stderrTail = '';
    let error: string | undefined;
    let gaveUp = false;
    const early = (reason: string): void => {
      if (gaveUp || ready) return;
      gaveUp = true;
      onEarlyExit(reason);
    };
    child.stderr?.on('data', (chunk: Buffer) => { stderrTail = (stderrTail + chunk.toString()).slice(-500); });
    // Could not be started or signalled; 'exit' follows when it had started.
    child.on('error', (err) => {
      error = err.message;
      if (child.pid === undefined && !this.closed) early(`cannot start the event process: ${err.message}`);
    });
    child.on('message', (raw) => {
      const m = raw as RelayMessage;
      if ('events' in m) {
        if (!this.closed) for (const e of m.events) this.onEvent(e);
      } else if ('ready' in m) {
        ready = true;
        onReady();
      } else if ('error' in m) {
        error = m.error;
      }
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.closed) return;
      const likely = signal === 'SIGABRT' ? '; most likely notifications overflowed its receive buffer' : '';
      const tail = stderrTail.trim().replace(/\s+/g, ' ');
      const reason = error ?? `event process exited (${signal ?? `code ${code}`}${likely})${tail ? `: ${tail}` : ''}`;
      if (!ready) {
        early(reason);
        return;
      }
      const delay = Date.now() - startedAt > HEALTHY_MS ? MIN_BACKOFF_MS : this.backoffMs;
      this.backoffMs = Math.min(delay * 2, MAX_BACKOFF_MS);
      this.restartTimer = setTimeout(() => this.restart(reason), delay);
    });
  }

  private restart(reason: string): void {
    this.restartTimer = undefined;
    if (this.closed) return;
    this.spawn(
      () => this.onEvent({ type: 'resync', reason }),
      (why) => {
        const delay = this.backoffMs;
        this.backoffMs = Math.min(delay * 2, MAX_BACKOFF_MS);
        this.restartTimer = setTimeout(() => this.restart(why), delay);
      },
    );
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = undefined;
    if (child && child.connected) child.disconnect();
    if (child && child.exitCode === null && child.signalCode === null) child.kill();
  }
}
