/**
 * A watch on etcd that cannot lose a change: the one answer to compaction
 * and reconnection, used by the lease watch and the network config watch.
 *
 * It lists (the state and the store revision it is consistent with) and
 * watches from that revision + 1; or, when the caller has just read the
 * state itself, watches from the revision it names. Whenever the watch
 * cannot be trusted, it lists again, hands the listing to `onListing` (the
 * caller diffs it against what it holds and emits the difference), and
 * watches on from the listing's revision + 1:
 * - etcd cancelled the watch (in practice: it compacted past the watch's
 *   revision): `onWarning` once, then the re-list;
 * - the stream broke (etcd stopped, connection lost), or etcd did not
 *   confirm a new watch within WATCH_CREATE_TIMEOUT_MS: `onConnectivity
 *   (false)` once per outage, never once per retry; etcd3's own resumption
 *   is not used, since only a listing tells what was missed or compacted
 *   away meanwhile.
 * Re-lists are retried with backoff until etcd answers, and end with
 * `onConnectivity(true)` once the new watch is in place.
 *
 * Events are handed on once: an event at a revision already taken into
 * account (by an earlier event or a listing) is dropped, and so is a
 * listing older than what the watch already told.
 *
 * Failure semantics: `start()` rejects when its first listing or watch
 * fails (nothing keeps running then); `startAt()` never rejects and keeps
 * retrying in the background. When the etcd client is closed under it
 * (ClientClosedError) the watch ends quietly, as if stopped. `stop()`
 * cancels the watch and every timer and never waits longer than
 * WATCH_CANCEL_TIMEOUT_MS for etcd. A listener that throws is reported
 * through `onWarning` and does not stop the watch.
 *
 * The watch is made with etcd3's unconnected `watcher()` rather than
 * `create()`, which does not settle while etcd is unreachable: it would
 * leave nothing to cancel, and etcd3 would go on reconnecting that watch
 * for ever, keeping the process alive after stop().
 */
import { ClientClosedError, type IKeyValue, type Watcher } from 'etcd3';
import { Backoff } from './backoff';
import { describeEtcdError } from './etcd-errors';
import { callListener, warnSafely } from './listeners';

/** How long etcd may take to confirm a new watch before the attempt counts as failed. */
export const WATCH_CREATE_TIMEOUT_MS = 5000;
/** How long stop() waits for etcd to confirm a watch's cancellation. */
const WATCH_CANCEL_TIMEOUT_MS = 2000;

export interface WatchEvent {
  readonly type: 'Put' | 'Delete';
  readonly kv: IKeyValue;
  /** The revision of the change (a deletion's kv carries it too; the response header's is a fallback). */
  readonly revision: bigint;
}

export interface ResyncingWatchSource<L extends { readonly revision: bigint }> {
  /** What is watched, for messages: "the network config". */
  readonly what: string;
  /** The state and the store revision it was read at (not a key's mod revision, which may lie in the compacted range). */
  list(): Promise<L>;
  /** An unconnected etcd3 watcher (`watch()…watcher()`) from `fromRevision`. */
  watcher(fromRevision: bigint): Watcher;
  /** Re-list backoff, in ms. */
  readonly backoff: { readonly baseMs: number; readonly maxMs: number };
}

/**
 * Re-list backoff for both watches. Capped at half a second so that the
 * agent is back within a second of etcd answering after an outage; while
 * etcd is away the etcd client's circuit breaker (etcd-client.ts) lets one
 * trial call through every 300 ms, so a short cap costs no connection storm.
 */
export const RELIST_BACKOFF = { baseMs: 100, maxMs: 500 } as const;

export interface ResyncingWatchHooks<L> {
  /** A listing at start-up or after the watch could not be trusted; `reason` says which. */
  onListing(listing: L, reason: string): void;
  /** The events of one watch response that were not taken into account yet. */
  onEvents(events: WatchEvent[]): void;
  /** Contact with etcd lost (once per outage) or regained (once the new watch is in place). */
  onConnectivity?(up: boolean, error?: Error): void;
  /** etcd cancelled the watch (`detail` may be empty); a re-list follows. Without it, a warning says so. */
  onCancelled?(detail: string): void;
  /** etcd cancelled the watch (without `onCancelled`), or a listener failed. */
  onWarning?(message: string): void;
}

/** etcd refused or ended the watch itself (in practice: compacted past its revision). */
class WatchCancelledError extends Error {
  constructor(cause: unknown) {
    super(describeEtcdError(cause).replace(/^Watcher canceled:\s*/, '').trim());
    this.name = 'WatchCancelledError';
  }
}

export class ResyncingWatch<L extends { readonly revision: bigint }> {
  /** The live watch; events from any other are ignored. */
  private watcher?: Watcher;
  /** Bumped by stop() and by each resync: an attempt that finds it changed gives up. */
  private generation = 0;
  private stopped = false;
  private readonly stopping = new AbortController();
  private up = true;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff: Backoff;
  private resyncing?: Promise<void>;
  /** A resync was asked for while one ran: run another after it. */
  private resyncAgain?: string;
  /** Every change up to this store revision has been taken into account. */
  private seen = -1n;

  constructor(private readonly source: ResyncingWatchSource<L>, private readonly hooks: ResyncingWatchHooks<L>) {
    this.backoff = new Backoff(source.backoff.baseMs, source.backoff.maxMs);
  }

  /** Lists (or takes `initial`, a listing the caller just made) and watches on. Rejects when either fails. */
  async start(initial?: L): Promise<void> {
    const gen = ++this.generation;
    try {
      const listing = initial ?? (await this.source.list());
      if (this.stopped || gen !== this.generation) return;
      this.applyListing(listing, 'start');
      await this.openWatch(this.seen + 1n, gen);
    } catch (err) {
      if (this.stopped) return;
      this.setConnectivity(false, err);
      throw err;
    }
  }

  /**
   * Watches from `fromRevision`, the caller holding the state at
   * `fromRevision` − 1. Never rejects: when the watch cannot be made, it
   * keeps trying in the background.
   */
  async startAt(fromRevision: bigint): Promise<void> {
    this.seen = fromRevision - 1n;
    const gen = ++this.generation;
    try {
      await this.openWatch(fromRevision, gen);
    } catch (err) {
      if (this.stopped || gen !== this.generation) return;
      this.failed(err);
    }
  }

  /** Lists again and watches on; resolves once done (or failed, a retry then being scheduled). */
  resync(reason: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.resyncing) {
      this.resyncAgain = reason;
      return this.resyncing;
    }
    this.resyncing = this.doResync(reason).finally(() => {
      this.resyncing = undefined;
      const again = this.resyncAgain;
      this.resyncAgain = undefined;
      if (again !== undefined) void this.resync(again);
    });
    return this.resyncing;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.generation++;
    this.stopping.abort();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const w = this.watcher;
    this.watcher = undefined;
    if (w) await cancelWatch(w);
    await this.resyncing;
  }

  private async doResync(reason: string): Promise<void> {
    const gen = ++this.generation;
    const old = this.watcher;
    this.watcher = undefined;
    if (old) await cancelWatch(old);
    try {
      const listing = await this.untilStopped(this.source.list());
      if (!listing || gen !== this.generation || this.stopped) return;
      this.applyListing(listing, reason);
      if (!(await this.openWatch(this.seen + 1n, gen))) return;
      this.backoff.reset();
      this.setConnectivity(true);
    } catch (err) {
      if (this.stopped || gen !== this.generation) return;
      this.failed(err);
    }
  }

  private applyListing(listing: L, reason: string): void {
    if (listing.revision < this.seen) return; // older than what the watch already told
    this.seen = listing.revision;
    this.call(() => this.hooks.onListing(listing, reason));
  }

  /** A listing or a watch could not be made, or etcd ended the watch. */
  private failed(err: unknown): void {
    if (err instanceof ClientClosedError) {
      // The etcd client was closed under the watch (twilld shutting down):
      // nothing can come back, so end quietly rather than retry for ever.
      void this.stop();
      return;
    }
    if (err instanceof WatchCancelledError) {
      if (this.hooks.onCancelled) this.call(() => this.hooks.onCancelled?.(err.message));
      else this.warn(`etcd cancelled the watch on ${this.source.what}${err.message ? ` (${err.message})` : ''}; listing it again`);
    } else {
      this.setConnectivity(false, err);
    }
    // Even after a cancellation, through the backoff: should etcd cancel
    // every new watch at once, this must not become a busy loop.
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.resync('retry');
    }, this.backoff.next());
  }

  /**
   * Makes a watch from `fromRevision` and, once etcd confirms it, makes it
   * the live one. False when stopped or superseded meanwhile; rejects when
   * the connection breaks, etcd refuses the watch or does not answer in time.
   */
  private openWatch(fromRevision: bigint, gen: number): Promise<boolean> {
    const watcher = this.source.watcher(fromRevision);
    const signal = this.stopping.signal;
    return new Promise<boolean>((resolve, reject) => {
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const fail = (err: Error, cancel: boolean): void => {
        if (!settle()) return;
        if (cancel) void cancelWatch(watcher);
        reject(err);
      };
      const onAbort = (): void => {
        if (!settle()) return;
        void cancelWatch(watcher);
        resolve(false);
      };
      const timer = setTimeout(() => fail(new Error(`etcd did not confirm the watch on ${this.source.what} within ${WATCH_CREATE_TIMEOUT_MS / 1000} s`), true), WATCH_CREATE_TIMEOUT_MS);
      signal.addEventListener('abort', onAbort, { once: true });

      // Every handler is in place before etcd can answer: an 'error' without
      // a listener would throw out of etcd3's stream handler.
      watcher.on('connected', () => {
        if (!settle()) return;
        if (this.stopped || gen !== this.generation) {
          void cancelWatch(watcher);
          resolve(false);
          return;
        }
        this.watcher = watcher;
        resolve(true);
      });
      watcher.on('data', (res: { header: { revision: string | number }; events: { type: 'Put' | 'Delete'; kv: IKeyValue }[] }) => {
        if (this.watcher !== watcher) return;
        this.applyEvents(res.events, BigInt(res.header.revision));
      });
      watcher.on('disconnected', (err: Error) => {
        if (!settled) return fail(err, true);
        if (this.watcher !== watcher) return;
        this.generation++;
        this.watcher = undefined;
        void cancelWatch(watcher);
        this.setConnectivity(false, err);
        void this.resync('reconnect');
      });
      watcher.on('error', (err: Error) => {
        // etcd ended the watch. etcd3 has dropped it already: cancelling it
        // again would wait for an answer that never comes.
        if (!settled) return fail(new WatchCancelledError(err), false);
        if (this.watcher !== watcher) return;
        this.generation++;
        this.watcher = undefined;
        this.failed(new WatchCancelledError(err));
      });
    });
  }

  private applyEvents(events: readonly { type: 'Put' | 'Delete'; kv: IKeyValue }[], headerRevision: bigint): void {
    const fresh: WatchEvent[] = [];
    // Compared with what was seen before this response: one transaction's events share a revision.
    const before = this.seen;
    for (const ev of events) {
      const mod = BigInt(ev.kv.mod_revision || 0);
      const revision = mod > 0n ? mod : headerRevision;
      if (revision <= before) continue; // delivered before
      if (revision > this.seen) this.seen = revision;
      fresh.push({ type: ev.type, kv: ev.kv, revision });
    }
    if (fresh.length > 0) this.call(() => this.hooks.onEvents(fresh));
  }

  private setConnectivity(up: boolean, err?: unknown): void {
    if (this.up === up) return;
    this.up = up;
    const error = err === undefined ? undefined : err instanceof Error ? err : new Error(describeEtcdError(err));
    this.call(() => this.hooks.onConnectivity?.(up, error));
  }

  private call(listener: () => void): void {
    callListener(listener, `a listener of the watch on ${this.source.what}`, this.hooks.onWarning);
  }

  private warn(message: string): void {
    warnSafely(this.hooks.onWarning, message);
  }

  /** The promise's value, or undefined as soon as stop() is called. */
  private async untilStopped<T>(p: Promise<T>): Promise<T | undefined> {
    p.catch(() => undefined); // a rejection after stop() is of no interest
    const signal = this.stopping.signal;
    if (signal.aborted) return undefined;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([p, aborted]);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }
}

/** Cancels an etcd3 watcher; never throws, never waits longer than WATCH_CANCEL_TIMEOUT_MS. */
export async function cancelWatch(watcher: Watcher): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      watcher.cancel().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, WATCH_CANCEL_TIMEOUT_MS);
      }),
    ]);
  } catch {
    // cancel() throws synchronously when etcd3's stream is in an unexpected state
  } finally {
    clearTimeout(timer);
  }
}
