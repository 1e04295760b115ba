/**
 * ipip in userspace mode, for kernels without the ipip module: the same
 * wire format as kernel ipip (an outer IPv4 header with protocol 4, then the
 * inner packet unchanged) produced by the native userspace datapath. Pod
 * traffic enters the TUN device `flannel.ipip` (`<subnet>/32`, MTU
 * external − 20) through one route per peer, `<subnet> dev flannel.ipip`,
 * owned by ipip's route protocol like the kernel mode's routes; the engine
 * sends it to the peer's public IP. With DirectRouting, peers the kernel
 * reaches directly are routed via the external interface instead, as in
 * kernel mode.
 */
import type { Netlink } from '../../lib/netlink';
import type { AssignedPeers, BackendContext, BackendStart, LocalNode, PlanInput } from '../backend';
import type { KernelState } from '../kernel-state';
import { ipipIntake } from '../intake';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { routeViaExternal } from '../route-backend';
import { TunnelBackend } from '../userspace';
import { tunDevice } from '../userspace/tunnel-backend';
import { IPIP_DEVICE, IPIP_OVERHEAD } from './constants';

export class UserspaceIpipBackend extends TunnelBackend {
  readonly type = 'ipip';

  constructor(nl: Netlink, public directRouting: boolean, ctx: BackendContext) {
    super(nl, BACKEND_ROUTE_PROTOCOL.ipip, {
      backendType: 'ipip', mode: 'ipip', tunName: IPIP_DEVICE, overhead: IPIP_OVERHEAD,
      nl, log: ctx.log, requestReconcile: ctx.requestReconcile,
    });
  }

  get usesReach(): boolean {
    return this.directRouting;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    return { mtu: this.tunnel.check(local) };
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const link = input.device!;
    const direct = (publicIP: string) => this.directRouting && input.reach(publicIP);
    return {
      protocol: this.routeProtocol,
      routes: peers.carried.map((peer) => direct(peer.publicIP)
        ? { ...routeViaExternal(input, peer), peer: peer.key }
        : { dst: peer.subnet.toString(), dev: link.name, ifindex: link.index, onlink: false, peer: peer.key }),
      devices: tunDevice(input),
      keepRoutes: peers.leaving.map((p) => p.subnet.toString()),
      engine: this.engineTable(input.own, peers),
      skipped: [],
      intake: [ipipIntake()],
    };
  }
}
