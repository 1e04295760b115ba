/**
 * SubnetManager: this node's own lease (LeaseKeeper: acquire, renew, take
 * back when lost), the view of everyone's (LeaseWatcher), and the network
 * config as it changes (NetworkConfigWatcher, below), over one EtcdRegistry.
 */
import { ClientClosedError, type Watcher, type IKeyValue } from 'etcd3';
import type { NetworkConfig } from '../config';
import type { Lease, LeaseAttrs } from './lease';
import type { EtcdRegistry } from './etcd-registry';
import type { PreviousSubnets } from './subnet-file';
import { LeaseWatcher, LeaseWatcherHooks } from './lease-watcher';
import { LeaseKeeper, type LeaseKeeperOptions } from './lease-keeper';
import { Backoff } from './backoff';
import { describeEtcdError } from './etcd-errors';

// Callers import these from the manager, where they lived before the keeper had a file of its own.
export { CollisionLimitError, MAX_CREATE_ATTEMPTS } from './lease-keeper';

export interface SubnetManager {
  /** The raw network config, or undefined while the key is absent. */
  readNetworkConfig(): Promise<{ text: string; revision: bigint } | undefined>;
  /** Acquires (or adopts) this node's lease and keeps it alive until close(). */
  acquireLease(config: NetworkConfig, attrs: LeaseAttrs, previous: PreviousSubnets): Promise<Lease>;
  /** Rewrites the own lease's value in place (same key, same etcd lease). */
  updateLeaseAttrs(attrs: LeaseAttrs): Promise<void>;
  ownLease(): Lease | undefined;
  /** When the own lease runs out unless renewed; undefined for a reservation. */
  leaseExpiry(): Date | undefined;
  /** Watches every lease; the own lease is tracked too. */
  watchLeases(config: NetworkConfig, hooks: LeaseWatcherHooks): Promise<LeaseWatcher>;
  /**
   * Watches the network config key from `fromRevision`: pass the revision
   * after the one the caller read (`readNetworkConfig()`'s `revision + 1n`);
   * the value held at `fromRevision − 1` is not reported again. `onChange`
   * gets each newer value once, undefined when the key is deleted. Resolves
   * once the watch is in place, or (etcd unreachable, at most 5 s) once the
   * first attempt failed and retrying has begun; never rejects. See
   * `NetworkConfigWatcher` for what happens on outages and compactions.
   */
  watchNetworkConfig(fromRevision: bigint, hooks: NetworkConfigWatchHooks): Promise<NetworkConfigWatch>;
  /** Stops timers and watches. The lease stays in etcd, so a restart finds it. */
  close(): Promise<void>;
}

export interface NetworkConfigWatchHooks {
  /** The key's new value and its mod revision; undefined once it is deleted. */
  onChange(found: { text: string; revision: bigint } | undefined): void;
  /** Contact with etcd lost (once per outage, not per retry), the watch cancelled by etcd, a listener failure. */
  onWarning?(message: string): void;
}

export interface NetworkConfigWatch {
  /** Cancels the watch and every timer; resolves when nothing is left running. */
  stop(): Promise<void>;
}

export type ManagerOptions = LeaseKeeperOptions;

export class EtcdSubnetManager implements SubnetManager {
  private readonly keeper: LeaseKeeper;
  private closed = false;
  private watcher?: LeaseWatcher;
  private readonly configWatchers = new Set<NetworkConfigWatcher>();

  constructor(private readonly registry: EtcdRegistry, opts: ManagerOptions) {
    this.keeper = new LeaseKeeper(registry, opts);
  }

  readNetworkConfig(): Promise<{ text: string; revision: bigint } | undefined> {
    return this.registry.getConfig();
  }

  ownLease(): Lease | undefined {
    return this.keeper.ownLease();
  }

  leaseExpiry(): Date | undefined {
    return this.keeper.leaseExpiry();
  }

  acquireLease(config: NetworkConfig, attrs: LeaseAttrs, previous: PreviousSubnets): Promise<Lease> {
    return this.keeper.acquire(config, attrs, previous);
  }

  updateLeaseAttrs(attrs: LeaseAttrs): Promise<void> {
    return this.keeper.updateAttrs(attrs);
  }

  async watchLeases(config: NetworkConfig, hooks: LeaseWatcherHooks): Promise<LeaseWatcher> {
    const watcher = new LeaseWatcher(this.registry, config, {
      ...hooks,
      onConnectivity: (up, error) => {
        this.keeper.noticeConnectivity(up);
        hooks.onConnectivity?.(up, error);
      },
      onEvents: (events) => {
        this.keeper.noticeLeaseEvents(events);
        hooks.onEvents(events);
      },
    });
    this.watcher = watcher;
    await watcher.start(this.keeper.takeAcquisitionListing());
    return watcher;
  }

  async watchNetworkConfig(fromRevision: bigint, hooks: NetworkConfigWatchHooks): Promise<NetworkConfigWatch> {
    if (this.closed) throw new Error('the subnet manager is closed; cannot watch the network config');
    const watcher = new NetworkConfigWatcher(this.registry, fromRevision, hooks, () => this.configWatchers.delete(watcher));
    this.configWatchers.add(watcher);
    await watcher.start();
    return watcher;
  }

  async close(): Promise<void> {
    this.closed = true;
    const keeper = this.keeper.close();
    await Promise.all([...this.configWatchers].map((w) => w.stop()));
    await this.watcher?.stop();
    await keeper;
  }
}

/** How long etcd may take to confirm a new watch before the attempt counts as failed. */
const WATCH_CREATE_TIMEOUT_MS = 5000;
/** How long stop() waits for etcd to confirm a watch's cancellation. */
const WATCH_CANCEL_TIMEOUT_MS = 2000;

interface ConfigWatchEvent {
  readonly type: 'Put' | 'Delete';
  readonly kv: IKeyValue;
}

/** etcd refused or ended the watch itself (in practice: compacted past its revision). */
class WatchCancelledError extends Error {
  constructor(cause: unknown) {
    const detail = describeEtcdError(cause).replace(/^Watcher canceled:\s*/, '').trim();
    super(detail);
    this.name = 'WatchCancelledError';
  }
}

/**
 * Watches `<prefix>/config` and reports each change once, in order.
 *
 * The caller is taken to hold the value the key had at `fromRevision` − 1;
 * the first watch starts at `fromRevision`, so a change made between the
 * caller's read and the watch is delivered too.
 *
 * Whenever the watch cannot be trusted it reads the key again, once, and
 * watches on from the revision of that read (the store's revision, not the
 * key's: a key unchanged since before a compaction would otherwise send the
 * new watch into the compacted range again):
 * - etcd cancelled the watch (it compacted past the watch's revision);
 * - the stream broke (etcd stopped, connection lost): etcd3's own resumption
 *   is not used; the read is retried with backoff (at most 3 s apart) until
 *   etcd answers. One warning per outage, none per retry.
 * A value is reported only when its mod revision is newer than the one
 * reported last (an event delivered twice, or a re-read finding the value
 * already held, reports nothing); a deletion only while a value is held.
 * The events of one watch response are reported as their net result.
 *
 * The watch is made with etcd3's unconnected `watcher()` rather than
 * `EtcdRegistry.watchConfig()`, whose `create()` does not settle while etcd
 * is unreachable: it would leave nothing to cancel, and etcd3 would go on
 * reconnecting that watch for ever, keeping the process alive after stop().
 */
class NetworkConfigWatcher implements NetworkConfigWatch {
  /** The live watch; events from any other are ignored. */
  private watcher?: Watcher;
  /** Bumped by stop() and by each resync: an attempt that finds it changed gives up. */
  private generation = 0;
  private stopped = false;
  private readonly stopping = new AbortController();
  private up = true;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff = new Backoff(200, 3000);
  private resyncing?: Promise<void>;
  /** A resync was asked for while one ran: run another after it. */
  private resyncAgain = false;
  /** Every change up to this store revision has been taken into account. */
  private seen: bigint;
  /** What the listener holds: the value of this mod revision, or nothing (undefined). */
  private held: { modRevision: bigint } | undefined;

  constructor(
    private readonly registry: EtcdRegistry,
    private readonly fromRevision: bigint,
    private readonly hooks: NetworkConfigWatchHooks,
    private readonly onStopped: () => void,
  ) {
    this.seen = fromRevision - 1n;
    this.held = { modRevision: fromRevision - 1n };
  }

  /** Opens the first watch at `fromRevision`; when that fails, keeps trying in the background. Never rejects. */
  async start(): Promise<void> {
    const gen = ++this.generation;
    try {
      await this.openWatch(this.fromRevision, gen);
    } catch (err) {
      if (this.stopped || gen !== this.generation) return;
      this.failed(err);
    }
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
    this.onStopped();
  }

  private resync(): void {
    if (this.stopped) return;
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    this.resyncing = this.doResync().finally(() => {
      this.resyncing = undefined;
      if (this.resyncAgain) {
        this.resyncAgain = false;
        this.resync();
      }
    });
  }

  private async doResync(): Promise<void> {
    const gen = ++this.generation;
    const old = this.watcher;
    this.watcher = undefined;
    if (old) await cancelWatch(old);
    try {
      const read = await this.untilStopped(this.readConfig());
      if (!read || gen !== this.generation || this.stopped) return;
      this.applyRead(read.found, read.revision);
      if (!(await this.openWatch(this.seen + 1n, gen))) return;
      this.up = true;
      this.backoff.reset();
    } catch (err) {
      if (this.stopped || gen !== this.generation) return;
      this.failed(err);
    }
  }

  /** A read or a watch could not be made, or etcd ended the watch. */
  private failed(err: unknown): void {
    if (err instanceof ClientClosedError) {
      // The etcd client was closed under the watch (twilld shutting down):
      // nothing can come back, so end quietly rather than retry for ever.
      void this.stop();
      return;
    }
    if (err instanceof WatchCancelledError) {
      this.warn(`etcd cancelled the watch on the network config${err.message ? ` (${err.message})` : ''}, ` +
        'probably because it compacted past the watch\'s revision; reading the config again');
    } else {
      this.setDown(err);
    }
    // Even after a cancellation, through the backoff: should etcd cancel
    // every new watch at once, this must not become a busy loop.
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.resync();
    }, this.backoff.next());
  }

  /**
   * Makes a watch from `fromRevision` and, once etcd confirms it, makes it
   * the live one. False when stopped or superseded meanwhile; rejects when
   * the connection breaks, etcd refuses the watch or does not answer in time.
   */
  private openWatch(fromRevision: bigint, gen: number): Promise<boolean> {
    const watcher = this.registry.client.watch().key(this.registry.configKey).startRevision(fromRevision.toString()).watcher();
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
      const fail = (err: Error, cancel: boolean) => {
        if (!settle()) return;
        if (cancel) void cancelWatch(watcher);
        reject(err);
      };
      const onAbort = () => {
        if (!settle()) return;
        void cancelWatch(watcher);
        resolve(false);
      };
      const timer = setTimeout(() => fail(new Error(`etcd did not confirm the watch on the network config within ${WATCH_CREATE_TIMEOUT_MS / 1000} s`), true), WATCH_CREATE_TIMEOUT_MS);
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
      watcher.on('data', (res: { header: { revision: string | number }; events: ConfigWatchEvent[] }) => {
        if (this.watcher !== watcher) return;
        this.applyEvents(res.events, BigInt(res.header.revision));
      });
      watcher.on('disconnected', (err: Error) => {
        if (!settled) return fail(err, true);
        if (this.watcher !== watcher) return;
        // etcd3 would resume the watch by itself, but only a read tells what
        // was missed (or compacted away) meanwhile; and the retries are ours.
        this.generation++;
        this.watcher = undefined;
        void cancelWatch(watcher);
        this.setDown(err);
        this.resync();
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

  private applyEvents(events: readonly ConfigWatchEvent[], headerRevision: bigint): void {
    let changed = false;
    let latest: { text: string; revision: bigint } | undefined;
    for (const ev of events) {
      // A deletion's kv carries the deletion's revision; the header's is a fallback.
      const mod = BigInt(ev.kv.mod_revision || 0);
      const revision = mod > 0n ? mod : headerRevision;
      if (revision <= this.seen) continue; // delivered before
      this.seen = revision;
      changed = true;
      latest = ev.type === 'Delete' ? undefined : { text: ev.kv.value.toString('utf8'), revision };
    }
    if (changed) this.report(latest);
  }

  /** The result of a read at store revision `revision`. */
  private applyRead(found: { text: string; revision: bigint } | undefined, revision: bigint): void {
    if (revision < this.seen) return; // older than what the watch already told
    this.seen = revision;
    this.report(found);
  }

  private report(found: { text: string; revision: bigint } | undefined): void {
    if (found ? this.held !== undefined && found.revision <= this.held.modRevision : this.held === undefined) return;
    this.held = found ? { modRevision: found.revision } : undefined;
    try {
      this.hooks.onChange(found);
    } catch (err) {
      this.warn(`the network config listener failed: ${(err as Error).message}`);
    }
  }

  /**
   * The key and the store revision it was read at. (readNetworkConfig gives
   * only the key's own mod revision, which may lie in the compacted range.)
   */
  private async readConfig(): Promise<{ found?: { text: string; revision: bigint }; revision: bigint }> {
    const res = await this.registry.client.kv.range({ key: Buffer.from(this.registry.configKey) });
    const kv = res.kvs[0];
    return {
      found: kv ? { text: kv.value.toString('utf8'), revision: BigInt(kv.mod_revision) } : undefined,
      revision: BigInt(res.header.revision),
    };
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

  private setDown(err: unknown): void {
    if (!this.up) return;
    this.up = false;
    this.warn(`lost the watch on the network config (${describeEtcdError(err)}); ` +
      'retrying, and reading the config again once etcd answers');
  }

  private warn(message: string): void {
    try {
      this.hooks.onWarning?.(message);
    } catch {
      // a failing logger must not stop the watch
    }
  }
}

/** Cancels an etcd3 watcher; never throws, never waits longer than WATCH_CANCEL_TIMEOUT_MS. */
async function cancelWatch(watcher: Watcher): Promise<void> {
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
