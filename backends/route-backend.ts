/**
 * What host-gw and kernel ipip share: one route per peer, owned by the
 * backend's route protocol number (flanneld shares this as its "route
 * network" type). Subclasses say how to start, which device (if any) they
 * own, and which route a peer needs.
 */
import type { Lease } from '../lib/subnet';
import type { LinkInfo, Netlink } from '../lib/netlink';
import type { AssignedPeers, Backend, BackendStart, LocalNode, Peer, PlanInput } from './backend';
import type { DeviceState, KernelState, WantedRoute } from './kernel-state';

export abstract class RouteBackend implements Backend {
  abstract readonly type: string;
  abstract readonly mode: string;
  abstract readonly routeProtocol: number;
  abstract readonly usesReach: boolean;

  constructor(protected readonly nl: Netlink) {}

  abstract start(local: LocalNode): Promise<BackendStart>;

  /** The route that carries traffic to `peer`. */
  protected abstract routeTo(input: PlanInput, peer: Peer): WantedRoute;

  /** Brings local devices back if needed; resolves with the device the plan routes through, if any. */
  async prepare(_own: Lease, _peers: AssignedPeers): Promise<LinkInfo | undefined> {
    return undefined;
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const devices: DeviceState[] = input.device
      ? [{ name: input.device.name, ifindex: input.device.index, addresses: [`${input.own.subnet.ip.toString()}/32`] }]
      : [];
    return {
      protocol: this.routeProtocol,
      routes: peers.carried.map((peer) => ({ ...this.routeTo(input, peer), peer: peer.key })),
      devices,
      keepRoutes: peers.leaving.map((p) => p.subnet.toString()),
      skipped: [],
    };
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {}
}

/** A plain route to the peer's public IP through the external interface (host-gw, DirectRouting). */
export function routeViaExternal(input: PlanInput, peer: Peer): WantedRoute {
  const ext = input.local.extIface;
  return { dst: peer.subnet.toString(), gateway: peer.publicIP, dev: ext.name, ifindex: ext.index, onlink: false };
}
