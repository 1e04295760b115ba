/**
 * host-gw: no encapsulation; each peer's subnet is routed via the peer's
 * public IP on the external interface (its IPv6 subnet via its PublicIPv6,
 * in dual stack), so every node must be on one
 * link-layer network with the others. It refuses to start when the public
 * IP is not an address of the interface (a NAT in between would swallow
 * the traffic).
 */
import type { IPNet } from '../../lib/ip';
import type { Netlink } from '../../lib/netlink';
import type { BackendFactory, BackendStart, LocalNode, Peer, PlanInput } from '../backend';
import { BackendUnavailableError, localCarriesIPv4 } from '../backend';
import { IP } from '../../lib/ip';
import type { WantedRoute } from '../kernel-state';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { RouteBackend, ipv6RouteViaExternal, routeViaExternal } from '../route-backend';

class HostGwBackend extends RouteBackend {
  readonly type = 'host-gw';
  readonly mode = 'kernel';
  readonly routeProtocol = BACKEND_ROUTE_PROTOCOL['host-gw'];
  // Which peers it can carry is the kernel's route and ARP, asked by the assignment.
  readonly usesReach = true;

  constructor(nl: Netlink) {
    super(nl);
  }

  async start(local: LocalNode): Promise<BackendStart> {
    // The address peers route to (PublicIPv6 in an IPv6-only network) must be the interface's own.
    const v6only = !localCarriesIPv4(local);
    const publicIP = v6only ? local.publicIPv6 ?? '' : local.publicIP;
    const flag = v6only ? '--public-ipv6' : '--public-ip';
    const addrs = await this.nl.listAddresses(local.extIface.index, v6only ? 6 : 4);
    if (!addrs.some((a) => sameAddress(a.address, publicIP))) {
      const have = addrs.map((a) => a.address).join(', ') || 'none';
      throw new BackendUnavailableError('host-gw',
        `host-gw cannot run: the public IP ${publicIP} is not an address of ${local.extIface.name} (it has ${have}); ` +
        `host-gw needs every node on one link-layer network without NAT. Use ${flag} with the interface's own address, or the vxlan backend`);
    }
    return { mtu: local.extIface.mtu };
  }

  protected routeTo(input: PlanInput, peer: Peer): WantedRoute {
    return routeViaExternal(input, peer);
  }

  // As flanneld: `<peer IPv6 subnet> via <peer PublicIPv6> dev <ext>`.
  protected override ipv6RouteTo(input: PlanInput, peer: Peer & { ipv6Subnet: IPNet; publicIPv6: string }): WantedRoute {
    return ipv6RouteViaExternal(input, peer);
  }
}

function sameAddress(a: string, b: string): boolean {
  try {
    return IP.parse(a).equals(IP.parse(b));
  } catch {
    return false;
  }
}

export const hostGwBackend: BackendFactory = {
  type: 'host-gw',
  validate: () => undefined,
  create: (_config, ctx) => new HostGwBackend(ctx.netlink),
};
