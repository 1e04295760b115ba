/**
 * udp (flanneld-compatible): TUN device `flannel0` with `<subnet>/32`, MTU
 * external − 28, one route `<Network> dev flannel0`, and a UDP socket on
 * the external address, port 8285 (Backend.Port). The native userspace
 * datapath carries each pod packet as the whole payload of one datagram to
 * the node whose subnet holds the destination, decrementing the TTL, and
 * answers a destination no peer holds with ICMP net unreachable.
 *
 * It carries the peers whose leases name udp (BackendType "udp" or absent:
 * flanneld publishes none for udp); its engine knows every usable peer
 * (TunnelBackend.engineTable).
 *
 * While the cluster migrates from one udp Port to another, a second udp
 * backend (slot 1: TUN `flannel1`, route protocol 124) runs beside the
 * first. The network route cannot lead to both, so while two run each
 * routes its own peers one by one, and the one left takes the network
 * route back.
 */
import type { Netlink } from '../../lib/netlink';
import type { AssignedPeers, BackendContext, BackendFactory, Identity, BackendStart, LocalNode, PlanInput } from '../backend';
import type { KernelState, WantedRoute } from '../kernel-state';
import { udpIntake } from '../intake';
import { routeProtocol } from '../route-protocols';
import { intSetting } from '../settings';
import { DEFAULT_UDP_PORT, TunnelBackend } from '../userspace';
import { tunDevice } from '../userspace/tunnel-backend';

export const UDP_DEVICE = 'flannel0';
/** The TUN of a second udp backend running beside the first (a Port migration). */
export const UDP_BESIDE_DEVICE = 'flannel1';
const UDP_OVERHEAD = 28;

class UdpBackend extends TunnelBackend {
  readonly type = 'udp';
  readonly usesReach = false;

  constructor(private readonly port: number, nl: Netlink, ctx: BackendContext) {
    super(nl, routeProtocol('udp', ctx.slot), {
      backendType: 'udp', mode: 'udp', tunName: ctx.slot === 1 ? UDP_BESIDE_DEVICE : UDP_DEVICE, overhead: UDP_OVERHEAD, port,
      alias: udpAlias(port),
      nl, log: ctx.log, requestReconcile: ctx.requestReconcile,
    });
  }

  async start(local: LocalNode): Promise<BackendStart> {
    return { mtu: this.tunnel.check(local) };
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const network = input.network;
    if (!network) throw new Error('the udp backend carries IPv4 only; the network config has no Network');
    const link = input.device!;
    const via = (dst: string, peer?: string): WantedRoute => ({ dst, dev: link.name, ifindex: link.index, onlink: false, ...(peer ? { peer } : {}) });
    return {
      protocol: this.routeProtocol,
      routes: input.siblings ? peers.carried.map((p) => via(p.subnet.toString(), p.key)) : [via(network.toString())],
      devices: tunDevice(input),
      keepRoutes: peers.leaving.map((p) => p.subnet.toString()),
      engine: this.engineTable(input.own, peers),
      skipped: [],
      intake: [udpIntake(this.port)],
    };
  }
}

/** The TUN's alias: `twill udp Port=8285` (backends/footprint.ts reads it back). */
export function udpAlias(port: number): string {
  return `twill udp Port=${port}`;
}

export function portOfUdpAlias(alias: string | undefined): number | undefined {
  const m = /^twill udp Port=(\d{1,5})$/.exec(alias ?? '');
  return m ? Number(m[1]) : undefined;
}

function udpPort(config: Parameters<BackendFactory['validate']>[0]): number {
  return intSetting(config, 'Port', { min: 1, max: 65535, fallback: DEFAULT_UDP_PORT });
}

export const udpBackend: BackendFactory = {
  type: 'udp',
  validate: (config) => {
    udpPort(config);
  },
  // The port is not in flanneld's udp lease: peers must agree on it, so it is the backend's identity.
  identity: (config): Identity => (udpPort(config) !== DEFAULT_UDP_PORT ? { Port: udpPort(config) } : {}),
  create: (config, ctx) => new UdpBackend(udpPort(config), ctx.netlink, ctx),
};
