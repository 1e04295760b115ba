/**
 * What host-gw and kernel ipip share: one route per peer, owned by the
 * backend's route protocol number (flanneld shares this as its "route
 * network" type). Subclasses say how to start, which device (if any) they
 * own, and which route a peer needs.
 */
import type { IPNet } from '../lib/ip';
import type { Lease } from '../lib/subnet';
import { carriesIPv4, heldSubnets, leaseLabel } from '../lib/subnet/lease';
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

  /**
   * The route that carries IPv6 traffic to `peer`'s IPv6 subnet, for a
   * backend that carries IPv6; asked only when both nodes have an IPv6
   * subnet and the peer publishes a PublicIPv6.
   */
  protected ipv6RouteTo?(input: PlanInput, peer: Peer & { ipv6Subnet: IPNet; publicIPv6: string }): WantedRoute;

  /** Brings local devices back if needed; resolves with the device the plan routes through, if any. */
  async prepare(_own: Lease, _peers: AssignedPeers): Promise<LinkInfo | undefined> {
    return undefined;
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const devices: DeviceState[] = input.device
      ? [{ name: input.device.name, ifindex: input.device.index, addresses: [`${input.own.subnet.ip.toString()}/32`] }]
      : [];
    const routes: WantedRoute[] = [];
    const skipped: string[] = [];
    // IPv4 routes only between two nodes that both hold an IPv4 subnet: an IPv6-only lease's is 0.0.0.0/0.
    const ipv4 = carriesIPv4(input.own);
    for (const peer of peers.carried) {
      if (ipv4 && carriesIPv4(peer)) routes.push({ ...this.routeTo(input, peer), peer: peer.key });
      const v6 = this.ipv6Route(input, peer);
      if (typeof v6 === 'string') skipped.push(v6);
      else if (v6) routes.push({ ...v6, peer: peer.key });
    }
    return {
      protocol: this.routeProtocol,
      routes,
      devices,
      keepRoutes: peers.leaving.flatMap((p) => heldSubnets(p).map((s) => s.toString())),
      skipped,
    };
  }

  /** The peer's IPv6 route; undefined when this node or the peer has no IPv6 subnet; a reason when the peer cannot get one. */
  private ipv6Route(input: PlanInput, peer: Peer): WantedRoute | string | undefined {
    if (!this.ipv6RouteTo || !input.own.ipv6Subnet || !peer.ipv6Subnet) return undefined;
    if (!peer.publicIPv6) return `peer ${leaseLabel(peer)} has the IPv6 subnet ${peer.ipv6Subnet.toString()} but publishes no PublicIPv6; its IPv6 subnet is not routed`;
    return this.ipv6RouteTo(input, { ...peer, ipv6Subnet: peer.ipv6Subnet, publicIPv6: peer.publicIPv6 });
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {}
}

/** A plain route to the peer's PublicIPv6 through the external interface (host-gw over IPv6). */
export function ipv6RouteViaExternal(input: PlanInput, peer: Peer & { ipv6Subnet: IPNet; publicIPv6: string }): WantedRoute {
  const ext = input.local.extIface;
  return { dst: peer.ipv6Subnet.toString(), gateway: peer.publicIPv6, dev: ext.name, ifindex: ext.index, onlink: false };
}

/** A plain route to the peer's public IP through the external interface (host-gw, DirectRouting). */
export function routeViaExternal(input: PlanInput, peer: Peer): WantedRoute {
  const ext = input.local.extIface;
  return { dst: peer.subnet.toString(), gateway: peer.publicIP, dev: ext.name, ifindex: ext.index, onlink: false };
}
