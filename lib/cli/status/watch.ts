/**
 * `twill status --watch`: a new look at the cluster (`readSnapshot`) each
 * time a lease or the config changes, until `signal` aborts.
 *
 * States:
 *   watching    two etcd watches (the subnets prefix and the config key)
 *               run from the revision of the last look; any event schedules
 *               a refresh after a short pause, so a burst of changes gives
 *               one redraw.
 *   refreshing  one look at a time; a change seen meanwhile runs one more.
 *   waiting     a look failed (etcd down): said once on `warn`, retried
 *               every RETRY_MS; the last picture stays on screen.
 * A watch that etcd ends (its revision compacted away, …) is dropped and made
 * anew from the next successful look, which also catches up on what changed.
 *
 * Failure: only the first look can fail the command (it rejects); after it,
 * `watchStatus` resolves when `signal` aborts and never rejects.
 */
import type { Watcher } from 'etcd3';
import type { EtcdRegistry } from '../../subnet/etcd';
import { describeEtcdError } from '../../subnet/etcd';
import { cancelWatch } from '../../subnet/resyncing-watch';
import type { ClusterStatus } from './model';
import { readSnapshot, type SnapshotOptions } from './snapshot';
import { RefreshLoop, type RefreshLoopOptions } from './refresh-loop';

export interface WatchOptions extends SnapshotOptions, RefreshLoopOptions {
  readonly render: (status: ClusterStatus) => void;
}

const DEBOUNCE_MS = 150;

export async function watchStatus(registry: EtcdRegistry, opts: WatchOptions): Promise<void> {
  const first = await readSnapshot(registry, opts);
  opts.render(first);
  const watch = new StatusWatch(registry, opts, etcdRevision(first));
  await watch.run();
}

/** The etcd revision of a look from readSnapshot (which only ever reads etcd). */
function etcdRevision(status: ClusterStatus): bigint {
  if (status.store.kind !== 'etcd') throw new Error('twill status --watch reads etcd only');
  return status.store.revision;
}

class StatusWatch extends RefreshLoop {
  private watchers: Watcher[] = [];
  private disconnected = false;
  private generation = 0;
  protected readonly answersAgain = 'etcd answers again';

  constructor(private readonly registry: EtcdRegistry, private readonly opts: WatchOptions, private revision: bigint) {
    super(opts);
  }

  async run(): Promise<void> {
    if (this.opts.signal.aborted) return;
    const done = new Promise<void>((resolve) => this.opts.signal.addEventListener('abort', () => resolve(), { once: true }));
    this.startWatches();
    await done;
    this.stopScheduling();
    await this.dropWatches();
  }

  /**
   * Unconnected watchers (etcd3 `watcher()`), listened to before they connect:
   * with `create()` the first watch could deliver a change while the second
   * was still being confirmed, before anyone listened, and the redraw was lost.
   * A watch etcd cannot take yet says so through 'disconnected' and is retried
   * by etcd3 itself.
   */
  private startWatches(): void {
    const gen = ++this.generation;
    const from = this.revision + 1n;
    this.watchers = [this.registry.leaseWatcherAt(from), this.registry.configWatcherAt(from)];
    for (const w of this.watchers) this.attach(w, gen);
  }

  private attach(w: Watcher, gen: number): void {
    w.on('data', () => {
      if (gen === this.generation) this.schedule(DEBOUNCE_MS);
    });
    w.on('disconnected', (err: Error) => {
      if (gen !== this.generation || this.disconnected) return;
      this.disconnected = true;
      this.failing = true;
      this.say(`lost the etcd watch (${describeEtcdError(err, { endpoints: this.opts.endpoints })}); the picture may be stale until etcd is back`);
    });
    w.on('connected', () => {
      if (gen !== this.generation || !this.disconnected) return;
      this.disconnected = false;
      this.schedule(DEBOUNCE_MS);
    });
    w.on('error', (err: Error) => {
      if (gen !== this.generation) return;
      // e.g. the revision was compacted away: look again, then watch from there.
      this.say(`the etcd watch ended (${err.message}); looking again`);
      void this.dropWatches();
      this.schedule(0);
    });
  }

  private async dropWatches(): Promise<void> {
    this.generation++;
    const old = this.watchers;
    this.watchers = [];
    // Bounded: a watch that never reached etcd (it is down) must not hold up the exit on SIGINT.
    await Promise.all(old.map(cancelWatch));
  }

  protected async look(): Promise<void> {
    const status = await readSnapshot(this.registry, this.opts);
    if (this.opts.signal.aborted) return;
    this.revision = etcdRevision(status);
    this.opts.render(status);
    if (this.watchers.length === 0) this.startWatches();
  }
}
