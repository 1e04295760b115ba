/**
 * LeaseWatcher keeps an exact copy of every valid lease in etcd.
 *
 * It lists the leases, then watches from the listed revision. Whenever the
 * watch cannot be trusted — etcd compacted past it, or the stream broke and
 * came back — it lists again and diffs against what it knows, so a change
 * made while it was away is never missed and every change is emitted once.
 * Which entries it keeps is lease-filter.ts's rule; each skipped entry is
 * warned about once per version of it.
 *
 * Events are delivered in batches through `onEvents`; listeners read the
 * whole state through `leases()` (the agent is level-triggered).
 * Failure: while etcd is unreachable it retries with backoff, reporting the
 * change of state once through `onConnectivity`, never once per retry.
 */
import type { Watcher, IKeyValue } from 'etcd3';
import type { NetworkConfig } from '../config';
import type { Lease, LeaseEvent } from './lease';
import type { EtcdRegistry, LeaseListing, RawKV } from './etcd-registry';
import { LeaseTable, skipWarning, type LeaseChange, type SkippedLease } from './lease-filter';
import { Backoff } from './backoff';

export interface LeaseWatcherHooks {
  onEvents(events: LeaseEvent[]): void;
  onWarning(message: string): void;
  /** Called when contact with etcd is lost or regained (not on every retry). */
  onConnectivity?(up: boolean, error?: Error): void;
  /** Called after each full re-list (start-up, compaction, reconnect). */
  onResync?(reason: string): void;
}

interface WatchEvent {
  readonly type: 'Put' | 'Delete';
  readonly kv: IKeyValue;
}

export class LeaseWatcher {
  private readonly table: LeaseTable;
  /** key → modRevision already warned about */
  private readonly warned = new Map<string, bigint>();
  private watcher?: Watcher;
  private generation = 0;
  private stopped = false;
  private up = true;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff = new Backoff(500, 15_000);
  private resyncing?: Promise<void>;
  private initial?: LeaseListing;

  constructor(
    private readonly registry: EtcdRegistry,
    config: NetworkConfig,
    private readonly hooks: LeaseWatcherHooks,
  ) {
    this.table = new LeaseTable(config);
  }

  /**
   * Lists and starts watching; rejects only if the first listing fails.
   * `initial`, a listing the caller just made, saves listing twice at start.
   */
  async start(initial?: LeaseListing): Promise<void> {
    this.initial = initial;
    await this.resync('start');
  }

  /** Every valid lease, by key. */
  leases(): ReadonlyMap<string, Lease> {
    return this.table.leases();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) await w.cancel().catch(() => undefined);
  }

  /** Forces a re-list (used by the agent's periodic repair as a safety net). */
  requestResync(reason: string): Promise<void> {
    return this.resync(reason).catch(() => undefined);
  }

  private resync(reason: string): Promise<void> {
    if (!this.resyncing) {
      this.resyncing = this.doResync(reason).finally(() => {
        this.resyncing = undefined;
      });
    }
    return this.resyncing;
  }

  private async doResync(reason: string): Promise<void> {
    if (this.stopped) return;
    const gen = ++this.generation;
    const old = this.watcher;
    this.watcher = undefined;
    if (old) await old.cancel().catch(() => undefined);
    try {
      const listing = this.initial ?? (await this.registry.listLeases());
      this.initial = undefined;
      if (gen !== this.generation || this.stopped) return;
      this.applyListing(listing.kvs);
      this.hooks.onResync?.(reason);
      const watcher = await this.registry.watchLeases(listing.revision + 1n);
      if (gen !== this.generation || this.stopped) {
        await watcher.cancel().catch(() => undefined);
        return;
      }
      this.attach(watcher, gen);
      this.setUp(true);
      this.backoff.reset();
    } catch (err) {
      if (this.stopped) return;
      this.setUp(false, err as Error);
      if (reason === 'start') throw err;
      this.scheduleRetry();
    }
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.resync('retry');
    }, this.backoff.next());
  }

  private attach(watcher: Watcher, gen: number): void {
    this.watcher = watcher;
    let broken = false;
    watcher.on('data', (res: { events: WatchEvent[] }) => {
      if (gen !== this.generation) return;
      this.applyChanges(res.events.map((ev): LeaseChange => {
        const raw = this.registry.toRaw(ev.kv);
        return ev.type === 'Delete' ? { type: 'delete', key: raw.key } : { type: 'put', raw };
      }));
    });
    watcher.on('disconnected', (err: Error) => {
      if (gen !== this.generation) return;
      broken = true;
      this.setUp(false, err);
    });
    watcher.on('connected', () => {
      if (gen !== this.generation || !broken) return;
      // The library resumes from its last revision, but a re-list is the
      // only way to be sure nothing was compacted away while we were gone.
      broken = false;
      void this.resync('reconnect');
    });
    watcher.on('error', (err: Error) => {
      if (gen !== this.generation) return;
      this.hooks.onWarning(`lease watch ended (${err.message}); listing the leases again`);
      this.scheduleRetryNow();
    });
  }

  private scheduleRetryNow(): void {
    void this.resync('watch error').catch(() => this.scheduleRetry());
  }

  private setUp(up: boolean, error?: Error): void {
    if (this.up === up) return;
    this.up = up;
    this.hooks.onConnectivity?.(up, error);
  }

  private applyListing(kvs: RawKV[]): void {
    const listed = new Set(kvs.map((raw) => raw.key));
    const changes: LeaseChange[] = kvs.map((raw) => ({ type: 'put', raw }));
    for (const key of this.table.keys()) if (!listed.has(key)) changes.push({ type: 'delete', key });
    this.applyChanges(changes);
  }

  private applyChanges(changes: readonly LeaseChange[]): void {
    const { events, skipped } = this.table.apply(changes);
    for (const c of changes) if (c.type === 'delete') this.warned.delete(c.key);
    for (const ev of events) if (ev.type !== 'removed') this.warned.delete(ev.lease.key);
    for (const entry of skipped) this.warnOnce(entry);
    if (events.length) this.hooks.onEvents(events);
  }

  private warnOnce(entry: SkippedLease): void {
    if (this.warned.get(entry.raw.key) === entry.raw.modRevision) return;
    this.warned.set(entry.raw.key, entry.raw.modRevision);
    this.hooks.onWarning(skipWarning(entry));
  }
}
