/**
 * What host-gw and kernel ipip share: one route per peer, through one
 * device, owned by the backend's route protocol number. (flanneld shares
 * this as its "route network" type.) Subclasses say how to start and which
 * route a peer needs.
 */
import type { Lease } from '../lib/subnet';
import type { Netlink } from '../lib/netlink';
import type { Backend, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from './backend';
import { applyPlan } from './apply-plan';
import { diffRoutes, emptyPlan, WantedRoute } from './kernel-state';
import { partitionPeers } from './peers';

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
    const plan = emptyPlan();
    const keep = new Set((opts.retained ?? []).map((p) => p.subnet.toString()));
    diffRoutes(plan, wanted, await this.nl.listRoutes({ family: 4, protocol: this.protocol }), this.protocol, keep);
    const outcome = await applyPlan(this.nl, plan);
    return { changed: outcome.changed, removed: outcome.removed, skipped, failures: outcome.failures };
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {
    const routes = await this.nl.listRoutes({ family: 4, protocol: this.protocol });
    await this.nl.apply(routes.map((r) => ({ op: 'deleteRoute' as const, route: { dst: r.dst, protocol: this.protocol, table: r.table } })), { ignoreMissing: true });
  }
}
