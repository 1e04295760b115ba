/**
 * udp (flanneld-compatible): TUN device `flannel0` with `<subnet>/32`, MTU
 * external − 28, one route `<Network> dev flannel0`, and a UDP socket on
 * the external address, port 8285 (Backend.Port). The native userspace
 * datapath carries each pod packet as the whole payload of one datagram to
 * the node whose subnet holds the destination, decrementing the TTL, and
 * answers a destination no peer holds with ICMP net unreachable.
 *
 * Peers are udp peers: leases whose BackendType is "udp" or absent (flanneld
 * publishes none for udp).
 */
import type { Lease } from '../../lib/subnet';
import type { Netlink } from '../../lib/netlink';
import type { BackendContext, BackendFactory, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from '../backend';
import { reconcileRoutes } from '../apply-plan';
import { partitionPeers } from '../peers';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { intSetting } from '../settings';
import { DEFAULT_UDP_PORT, TunnelBackend } from '../userspace';

export const UDP_DEVICE = 'flannel0';
const UDP_OVERHEAD = 28;
const PROTOCOL = BACKEND_ROUTE_PROTOCOL.udp;

class UdpBackend extends TunnelBackend {
  readonly type = 'udp';
  private local?: LocalNode;

  constructor(private readonly port: number, nl: Netlink, ctx: BackendContext) {
    super(nl, PROTOCOL, {
      backendType: 'udp', mode: 'udp', tunName: UDP_DEVICE, overhead: UDP_OVERHEAD, port,
      nl, log: ctx.log, requestReconcile: ctx.requestReconcile,
    });
  }

  async start(local: LocalNode): Promise<BackendStart> {
    this.local = local;
    return { mtu: this.tunnel.check(local) };
  }

  async reconcile(own: Lease, peers: readonly Lease[], opts: ReconcileOptions = {}): Promise<ReconcileReport> {
    const network = this.local?.network.network;
    if (!network) throw new Error('the udp backend carries IPv4 only; the network config has no Network');
    const { carried, skipped } = partitionPeers(peers, this.type, own);
    // Retained peers stay in the table: until their new backend's route covers them, the network route still leads here.
    const table = [...carried, ...(opts.retained ?? [])].map((p) => ({ subnet: p.subnet.toString(), publicIP: p.attrs.publicIP, port: this.port }));
    const link = await this.tunnel.ensure(own, table);
    return reconcileRoutes(this.nl, PROTOCOL, [{ dst: network.toString(), dev: link.name, ifindex: link.index, onlink: false }], skipped);
  }
}

function udpPort(config: Parameters<BackendFactory['validate']>[0]): number {
  return intSetting(config, 'Port', { min: 1, max: 65535, fallback: DEFAULT_UDP_PORT });
}

export const udpBackend: BackendFactory = {
  type: 'udp',
  validate: (config) => {
    udpPort(config);
  },
  create: (config, ctx) => new UdpBackend(udpPort(config), ctx.netlink, ctx),
};
