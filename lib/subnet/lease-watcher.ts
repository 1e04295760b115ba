/**
 * LeaseWatcher keeps an exact copy of every valid lease in etcd.
 *
 * It lists the leases, then watches from the listed revision. Whenever the
 * watch cannot be trusted — etcd compacted past it, or the stream broke and
 * came back — it lists again (resyncing-watch.ts) and diffs against what it
 * knows, so a change made while it was away is never missed and every
 * change is emitted once.
 * Which entries it keeps is lease-filter.ts's rule; each skipped entry is
 * warned about once per version of it.
 *
 * Events are delivered in batches through `onEvents`; listeners read the
 * whole state through `leases()` (the agent is level-triggered).
 * Failure: while etcd is unreachable it retries with backoff, reporting the
 * change of state once through `onConnectivity`, never once per retry.
 */
import type { NetworkConfig } from '../config';
import type { Lease, LeaseEvent } from './lease';
import type { EtcdRegistry, LeaseListing, RawKV } from './etcd-registry';
import { LeaseTable, skipWarning, type LeaseChange, type SkippedLease } from './lease-filter';
import { RELIST_BACKOFF, ResyncingWatch } from './resyncing-watch';

export interface LeaseWatcherHooks {
  onEvents(events: LeaseEvent[]): void;
  onWarning(message: string): void;
  /** Called when contact with etcd is lost or regained (not on every retry). */
  onConnectivity?(up: boolean, error?: Error): void;
  /** Called after each full re-list (start-up, compaction, reconnect). */
  onResync?(reason: string): void;
}

/**
 * What the agent needs of a lease watch, whichever store the leases come
 * from (etcd: LeaseWatcher; Kubernetes Nodes: kube-lease-watcher.ts): the
 * whole current state, read on every reconcile, and a way to stop.
 */
export interface LeaseView {
  /** Every valid lease, the own one included, by key. */
  leases(): ReadonlyMap<string, Lease>;
  stop(): Promise<void>;
}

export class LeaseWatcher implements LeaseView {
  private readonly table: LeaseTable;
  /** key → modRevision already warned about */
  private readonly warned = new Map<string, bigint>();
  private readonly watch: ResyncingWatch<LeaseListing>;

  constructor(
    registry: EtcdRegistry,
    config: NetworkConfig,
    private readonly hooks: LeaseWatcherHooks,
  ) {
    this.table = new LeaseTable(config);
    this.watch = new ResyncingWatch<LeaseListing>({
      what: 'the leases',
      list: () => registry.listLeases(),
      watcher: (from) => registry.leaseWatcherAt(from),
      backoff: RELIST_BACKOFF,
    }, {
      onListing: (listing, reason) => {
        this.applyListing(listing.kvs);
        hooks.onResync?.(reason);
      },
      onEvents: (events) => this.applyChanges(events.map((ev): LeaseChange => {
        const raw = registry.toRaw(ev.kv);
        return ev.type === 'Delete' ? { type: 'delete', key: raw.key } : { type: 'put', raw };
      })),
      onConnectivity: (up, error) => hooks.onConnectivity?.(up, error),
      onCancelled: (detail) => hooks.onWarning(`lease watch ended (${detail || 'cancelled by etcd'}); listing the leases again`),
      onWarning: (message) => hooks.onWarning(message),
    });
  }

  /**
   * Lists and starts watching; rejects if the first listing or watch fails.
   * `initial`, a listing the caller just made, saves listing twice at start.
   */
  start(initial?: LeaseListing): Promise<void> {
    return this.watch.start(initial);
  }

  /** Every valid lease, by key. */
  leases(): ReadonlyMap<string, Lease> {
    return this.table.leases();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  /** Forces a re-list (used by the agent's periodic repair as a safety net). */
  requestResync(reason: string): Promise<void> {
    return this.watch.resync(reason).catch(() => undefined);
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
