/**
 * `twill status --watch` in Kubernetes mode: a new look at the cluster
 * (`readKubeSnapshot`) each time a Node changes, and every POLL_MS for the
 * net-conf (a file or ConfigMap, which nothing here watches), until `signal`
 * aborts. A look that shows the same picture as the last one drawn is not
 * drawn again: kubelets touch their Nodes for reasons that change nothing
 * here.
 *
 * States:
 *   watching    one watch of Nodes from the resourceVersion of the last
 *               look (or the last event or bookmark); any Node event
 *               schedules a look after a short pause, so a burst of changes
 *               gives one redraw. The server ends a watch after its timeout:
 *               it is opened again from the last resourceVersion seen.
 *   refreshing  one look at a time; a change seen meanwhile runs one more.
 *   waiting     the watch or a look failed (API down): said once on `warn`,
 *               a look retried every RETRY_MS; the last picture stays.
 * 410 Gone (the resourceVersion is too old) is no failure: look again (a
 * fresh list) and watch from there.
 *
 * Failure: only the first look can fail the command (it rejects); after it,
 * `watchKubeStatus` resolves when `signal` aborts and never rejects.
 */
import { setTimeout as sleep } from 'timers/promises';
import { GoneError } from '../../kube';
import { describeKubeFailure, type KubeCli } from '../../kube/cluster-read';
import type { ClusterStatus } from './model';
import { toDocument } from './json';
import { readKubeSnapshot, type KubeSnapshotOptions } from './kube-snapshot';
import { RETRY_MS, RefreshLoop, type RefreshLoopOptions } from './refresh-loop';

export interface KubeWatchOptions extends KubeSnapshotOptions, RefreshLoopOptions {
  readonly render: (status: ClusterStatus) => void;
}

const DEBOUNCE_MS = 150;
/** How often the net-conf is looked at again (the agents re-read their file every 10 s too). */
const POLL_MS = 10_000;

export async function watchKubeStatus(kube: KubeCli, opts: KubeWatchOptions): Promise<void> {
  const first = await readKubeSnapshot(kube, opts);
  opts.render(first);
  await new KubeStatusWatch(kube, opts, first).run();
}

/** What a redraw would show, without the time and resourceVersion of the look. */
function picture(status: ClusterStatus): string {
  const doc = toDocument(status);
  return JSON.stringify({ config: doc.config, leases: doc.leases });
}

function resourceVersionOf(status: ClusterStatus): string {
  if (status.store.kind !== 'kube') throw new Error('readKubeSnapshot read no Nodes');
  return status.store.resourceVersion;
}

class KubeStatusWatch extends RefreshLoop {
  private resourceVersion: string;
  private drawn: string;
  protected readonly answersAgain: string;

  constructor(private readonly kube: KubeCli, private readonly opts: KubeWatchOptions, first: ClusterStatus) {
    super(opts);
    this.answersAgain = `the Kubernetes API at ${kube.client.server} answers again`;
    this.resourceVersion = resourceVersionOf(first);
    this.drawn = picture(first);
  }

  async run(): Promise<void> {
    const { signal } = this.opts;
    const poll = setInterval(() => this.schedule(0), POLL_MS);
    try {
      while (!signal.aborted) {
        try {
          const end = await this.kube.client.watchNodes(this.resourceVersion, (ev) => {
            if (ev.type === 'BOOKMARK') this.resourceVersion = ev.resourceVersion;
            else this.schedule(DEBOUNCE_MS);
          }, signal);
          if (end.reason === 'aborted') break;
          this.resourceVersion = end.resourceVersion;
        } catch (err) {
          if (signal.aborted) break;
          const gone = err instanceof GoneError;
          if (!gone) {
            this.failing = true;
            this.say(`lost the watch of Nodes (${describeKubeFailure(err, this.kube.client.server, 0)}); the picture may be stale, retrying every ${RETRY_MS / 1000} s`);
            await sleep(RETRY_MS, undefined, { signal }).catch(() => undefined);
          }
          // A fresh list catches up on what the watch missed and gives the resourceVersion to watch from.
          const before = this.resourceVersion;
          await this.refresh();
          // No new list (it failed, or one was under way): do not ask again for a watch the server just refused.
          if (gone && this.resourceVersion === before) await sleep(RETRY_MS, undefined, { signal }).catch(() => undefined);
        }
      }
    } finally {
      clearInterval(poll);
      this.stopScheduling();
    }
  }

  protected async look(): Promise<void> {
    const status = await readKubeSnapshot(this.kube, this.opts);
    if (this.opts.signal.aborted) return;
    this.resourceVersion = resourceVersionOf(status);
    const now = picture(status);
    if (now !== this.drawn) {
      this.drawn = now;
      this.opts.render(status);
    }
  }
}
