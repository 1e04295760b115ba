/**
 * What host-gw and kernel ipip share: one route per peer, through one
 * device, owned by the backend's route protocol number. (flanneld shares
 * this as its "route network" type.) Subclasses say how to start and which
 * route a peer needs.
 */
import type { Lease } from '../lib/subnet';
import type { Netlink } from '../lib/netlink';
import type { Backend, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from './backend';
import { deleteRoutesOf, reconcileRoutes } from './apply-plan';
import type { WantedRoute } from './kernel-state';
import { partitionPeers, subnetsOf } from './peers';

export abstract class RouteBackend implements Backend {
  abstract readonly type: string;
  abstract readonly mode: string;
  protected abstract readonly protocol: number;

  constructor(protected readonly nl: Netlink) {}

  abstract start(local: LocalNode): Promise<BackendStart>;

  /** The route that carries traffic to `peer`, or the reason it cannot. */
  protected abstract routeTo(peer: Lease): WantedRoute | string;

  /** Brings local devices back if needed, before routes are compared. */
  protected async prepare(_own: Lease): Promise<void> {}

  async reconcile(own: Lease, peers: readonly Lease[], opts: ReconcileOptions = {}): Promise<ReconcileReport> {
    await this.prepare(own);
    const { carried, skipped } = partitionPeers(peers, this.type, own);
    const wanted: WantedRoute[] = [];
    for (const peer of carried) {
      const route = this.routeTo(peer);
      if (typeof route === 'string') skipped.push(route);
      else wanted.push(route);
    }
    return reconcileRoutes(this.nl, this.protocol, wanted, skipped, subnetsOf(opts.retained));
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {
    await deleteRoutesOf(this.nl, this.protocol);
  }
}
