/**
 * LeaseWatcher keeps an exact copy of every valid lease in etcd.
 *
 * It lists the leases, then watches from the listed revision. Whenever the
 * watch cannot be trusted — etcd compacted past it, or the stream broke and
 * came back — it lists again and diffs against what it knows, so a change
 * made while it was away is never missed and every change is emitted once.
 * Malformed entries are skipped with one warning per entry version; a
 * subnet claimed by two keys goes to the older key.
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
import { leaseFromRaw } from './lease-validation';
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
  private readonly raw = new Map<string, RawKV>();
  private readonly valid = new Map<string, Lease>();
  /** subnet (IPNet string) → key that holds it */
  private readonly claims = new Map<string, string>();
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
    private config: NetworkConfig,
    private readonly hooks: LeaseWatcherHooks,
  ) {}

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
    return this.valid;
  }

  /** Re-validates every known entry against a new network config. */
  setConfig(config: NetworkConfig): void {
    this.config = config;
    const events: LeaseEvent[] = [];
    for (const raw of [...this.raw.values()]) this.apply(raw, events);
    if (events.length) this.hooks.onEvents(events);
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
      const events: LeaseEvent[] = [];
      for (const ev of res.events) {
        const raw = this.registry.toRaw(ev.kv);
        if (ev.type === 'Delete') this.remove(raw.key, events);
        else this.apply(raw, events);
      }
      if (events.length) this.hooks.onEvents(events);
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
    const events: LeaseEvent[] = [];
    const seen = new Set<string>();
    for (const raw of kvs) {
      seen.add(raw.key);
      const known = this.raw.get(raw.key);
      if (!known || known.modRevision !== raw.modRevision || !this.valid.has(raw.key)) this.apply(raw, events);
    }
    for (const key of [...this.raw.keys()]) if (!seen.has(key)) this.remove(key, events);
    if (events.length) this.hooks.onEvents(events);
  }

  private apply(raw: RawKV, events: LeaseEvent[]): void {
    this.raw.set(raw.key, raw);
    const previous = this.valid.get(raw.key);
    let lease: Lease;
    try {
      lease = leaseFromRaw(raw, this.config);
      const holder = this.olderHolder(lease);
      if (holder) throw new Error(`its subnet is already claimed by the older lease ${JSON.stringify(holder)}`);
    } catch (err) {
      this.warnOnce(raw, (err as Error).message);
      if (previous) this.drop(raw.key, previous, events);
      return;
    }
    this.evictYoungerHolders(lease, events);
    this.warned.delete(raw.key);
    this.valid.set(raw.key, lease);
    for (const s of subnetsOf(lease)) this.claims.set(s, raw.key);
    if (!previous) events.push({ type: 'added', lease });
    else if (previous.modRevision !== lease.modRevision) events.push({ type: 'changed', lease, previous });
  }

  private remove(key: string, events: LeaseEvent[]): void {
    this.raw.delete(key);
    this.warned.delete(key);
    const previous = this.valid.get(key);
    if (previous) {
      this.drop(key, previous, events);
      // A key that lost a subnet dispute may hold it now (only invalid keys can have lost one).
      for (const other of [...this.warned.keys()]) {
        const raw = this.raw.get(other);
        if (raw) this.apply(raw, events);
      }
    }
  }

  private drop(key: string, lease: Lease, events: LeaseEvent[]): void {
    this.valid.delete(key);
    for (const s of subnetsOf(lease)) if (this.claims.get(s) === key) this.claims.delete(s);
    events.push({ type: 'removed', lease });
  }

  /** The key of an older lease that holds one of this lease's subnets, if any. */
  private olderHolder(lease: Lease): string | undefined {
    const mine = this.raw.get(lease.key);
    for (const s of subnetsOf(lease)) {
      const holder = this.claims.get(s);
      if (holder === undefined || holder === lease.key) continue;
      const theirs = this.raw.get(holder);
      if (!theirs || !mine || theirs.createRevision <= mine.createRevision) return holder;
    }
    return undefined;
  }

  // Listing order is key order, not age: an older claimant seen second wins.
  private evictYoungerHolders(lease: Lease, events: LeaseEvent[]): void {
    for (const s of subnetsOf(lease)) {
      const holder = this.claims.get(s);
      if (holder === undefined || holder === lease.key) continue;
      const younger = this.valid.get(holder);
      const raw = this.raw.get(holder);
      if (younger) this.drop(holder, younger, events);
      if (raw) this.warnOnce(raw, `its subnet is already claimed by the older lease ${JSON.stringify(lease.key)}`);
    }
  }

  private warnOnce(raw: RawKV, reason: string): void {
    if (this.warned.get(raw.key) === raw.modRevision) return;
    this.warned.set(raw.key, raw.modRevision);
    this.hooks.onWarning(`skipping lease ${JSON.stringify(raw.key.slice(0, 80))}: ${reason}`);
  }
}

function subnetsOf(lease: Lease): string[] {
  return lease.ipv6Subnet ? [lease.subnet.toString(), lease.ipv6Subnet.toString()] : [lease.subnet.toString()];
}
