/**
 * SubnetManager: this node's own lease (LeaseKeeper: acquire, renew, take
 * back when lost), the view of everyone's (LeaseWatcher), and the network
 * config as it changes (NetworkConfigWatcher, below), over one EtcdRegistry.
 */
import type { NetworkConfig } from '../config';
import type { Lease, LeaseAttrs } from './lease';
import type { EtcdRegistry } from './etcd-registry';
import type { PreviousSubnets } from './subnet-file';
import { LeaseWatcher, LeaseWatcherHooks, type LeaseView } from './lease-watcher';
import { LeaseKeeper, type LeaseKeeperOptions } from './lease-keeper';
import { RELIST_BACKOFF, ResyncingWatch } from './resyncing-watch';
import { describeEtcdError, isEtcdConfigurationError } from './etcd-errors';
import { callListener, warnSafely } from './listeners';

// Callers import these from the manager, where they lived before the keeper had a file of its own.
export { CollisionLimitError, MAX_CREATE_ATTEMPTS } from './lease-keeper';

export interface SubnetManager {
  /** What the agent's messages call the store the leases live in; undefined: etcd. */
  readonly store?: string;
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
  watchLeases(config: NetworkConfig, hooks: LeaseWatcherHooks): Promise<LeaseView>;
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
  /**
   * Whether a failure of the store is one retrying cannot fix (a wrong CA,
   * rejected credentials, a missing RBAC rule): twilld stops on it at start-up.
   * The manager judges its own store's errors, so the agent loads no client.
   */
  isSetupError(err: unknown): boolean;
  /** The one line to log for a failure of the store. */
  describeError(err: unknown): string;
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

  isSetupError(err: unknown): boolean {
    return isEtcdConfigurationError(err);
  }

  describeError(err: unknown): string {
    return describeEtcdError(err);
  }

  async close(): Promise<void> {
    this.closed = true;
    const keeper = this.keeper.close();
    await Promise.all([...this.configWatchers].map((w) => w.stop()));
    await this.watcher?.stop();
    await keeper;
  }
}

/**
 * Watches `<prefix>/config` and reports each change once, in order, through
 * a ResyncingWatch (compaction, outages: see resyncing-watch.ts).
 *
 * The caller is taken to hold the value the key had at `fromRevision` − 1;
 * the first watch starts at `fromRevision`, so a change made between the
 * caller's read and the watch is delivered too. A value is reported only
 * when its mod revision is newer than the one reported last (a re-read
 * finding the value already held reports nothing); a deletion only while a
 * value is held. The events of one watch response are reported as their
 * net result. One warning per outage, none per retry.
 */
class NetworkConfigWatcher implements NetworkConfigWatch {
  private readonly watch: ResyncingWatch<ConfigReading>;
  private stopped = false;
  /** What the listener holds: the value of this mod revision, or nothing (undefined). */
  private held: { modRevision: bigint } | undefined;

  constructor(
    registry: EtcdRegistry,
    private readonly fromRevision: bigint,
    private readonly hooks: NetworkConfigWatchHooks,
    private readonly onStopped: () => void,
  ) {
    this.held = { modRevision: fromRevision - 1n };
    this.watch = new ResyncingWatch<ConfigReading>({
      what: 'the network config',
      list: () => registry.readConfigAt(),
      watcher: (from) => registry.configWatcherAt(from),
      backoff: RELIST_BACKOFF,
    }, {
      onListing: (read) => this.report(read.found),
      onEvents: (events) => {
        const last = events[events.length - 1];
        this.report(last.type === 'Delete' ? undefined : { text: last.kv.value.toString('utf8'), revision: last.revision });
      },
      onConnectivity: (up, err) => {
        if (!up) this.warn(`lost the watch on the network config (${describeEtcdError(err)}); retrying, and reading the config again once etcd answers`);
      },
      onCancelled: (detail) => this.warn(`etcd cancelled the watch on the network config${detail ? ` (${detail})` : ''}, ` +
        'probably because it compacted past the watch\'s revision; reading the config again'),
      onWarning: (message) => this.warn(message),
    });
  }

  /** Opens the first watch at `fromRevision`; when that fails, keeps trying in the background. Never rejects. */
  start(): Promise<void> {
    return this.watch.startAt(this.fromRevision);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.watch.stop();
    this.onStopped();
  }

  private report(found: { text: string; revision: bigint } | undefined): void {
    if (found ? this.held !== undefined && found.revision <= this.held.modRevision : this.held === undefined) return;
    this.held = found ? { modRevision: found.revision } : undefined;
    callListener(() => this.hooks.onChange(found), 'the network config listener', this.hooks.onWarning);
  }

  private warn(message: string): void {
    warnSafely(this.hooks.onWarning, message);
  }
}

type ConfigReading = Awaited<ReturnType<EtcdRegistry['readConfigAt']>>;
