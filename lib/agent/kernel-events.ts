/**
 * The kernel's change notifications, as the agent uses them: a deletion of
 * a link, route or entry (or lost notifications) asks for a reconcile soon,
 * once per burst; additions and state changes, which twill's own writes and
 * ordinary ARP traffic cause by the thousand, are left to the repair timer,
 * and only tell `watch` whether that repair must read the kernel again.
 *
 * Without the notification socket nothing is lost but speed: the repair
 * timer still repairs, only later, and every repair reads the kernel.
 */
import type { Log } from '../observe/logger';
import type { Netlink, NetlinkEvent, Unsubscribe } from '../netlink';
import { KernelWatch } from './kernel-watch';

/** A burst of deletions (a device going away takes its routes and entries) makes one reconcile. */
const BURST_MS = 100;

export interface KernelEventsOptions {
  readonly log: Log;
  /** How long a full read of the kernel is trusted while no notification says otherwise. */
  readonly fullCheckMs: number;
  /** Asks the reconcile loop for a reconcile, naming why. */
  readonly request: (reason: string) => void;
  /** Whether a summary of additions may have touched what a running backend owns (BackendSet.touches). */
  readonly touches: (change: Extract<NetlinkEvent, { type: 'changes' }>) => boolean;
}

export class KernelEvents {
  /** Whether a repair may skip reading the kernel (lib/agent/kernel-watch.ts). */
  readonly watch: KernelWatch;
  private unsubscribe?: Unsubscribe;
  private burstTimer?: NodeJS.Timeout;
  /** Why the pending burst's reconcile runs. */
  private burstReason?: string;

  constructor(private readonly o: KernelEventsOptions) {
    this.watch = new KernelWatch(o.fullCheckMs);
  }

  /** Subscribes, then asks for a reconcile (anything deleted before the subscription is put back by it); never throws. */
  async start(nl: Netlink): Promise<void> {
    try {
      this.unsubscribe = await nl.subscribe(['link', 'ipv4-route', 'ipv6-route', 'neigh', 'ipv4-ifaddr', 'ipv6-ifaddr'], (ev) => this.changed(ev), { deletionsOnly: true });
      this.watch.started();
      this.o.request('kernel events subscribed');
    } catch (err) {
      this.o.log.warn('cannot watch kernel changes; repairs will wait for the repair timer', { error: (err as Error).message });
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.watch.stopped();
    if (this.burstTimer) clearTimeout(this.burstTimer);
    this.burstTimer = undefined;
  }

  private changed(ev: NetlinkEvent): void {
    if (ev.type === 'changes') {
      if (ev.unknown || this.o.touches(ev)) this.watch.changed();
      return;
    }
    const relevant = ev.type === 'resync' || ev.type === 'link' || ev.action === 'del';
    if (!relevant) return;
    this.watch.changed();
    if (ev.type === 'resync' && ev.closed) this.watch.stopped();
    if (ev.type === 'resync') this.o.log.warn('kernel notifications were lost; reconciling against the whole kernel state', { why: ev.reason });
    // Lost events outrank any one change in the log: the burst's reconcile is then a full resync.
    if (ev.type === 'resync' || !this.burstReason) this.burstReason = ev.type === 'resync' ? 'kernel events lost' : `kernel ${ev.type} changed`;
    if (this.burstTimer) return;
    this.burstTimer = setTimeout(() => {
      const reason = this.burstReason!;
      this.burstTimer = undefined;
      this.burstReason = undefined;
      this.o.request(reason);
    }, BURST_MS);
  }
}
