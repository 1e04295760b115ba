/**
 * ipip in userspace mode, for kernels without the ipip module: the same
 * wire format as kernel ipip (an outer IPv4 header with protocol 4, then the
 * inner packet unchanged) produced by the native userspace datapath. Pod
 * traffic enters the TUN device `flannel.ipip` (`<subnet>/32`, MTU
 * external − 20) through one route per peer, `<subnet> dev flannel.ipip`,
 * owned by ipip's route protocol like the kernel mode's routes; the engine
 * sends it to the peer's public IP. With DirectRouting, on-link peers are
 * routed via the external interface instead, as in kernel mode.
 */
import type { Lease } from '../../lib/subnet';
import type { Netlink } from '../../lib/netlink';
import type { BackendContext, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from '../backend';
import { reconcileRoutes } from '../apply-plan';
import type { WantedRoute } from '../kernel-state';
import { partitionPeers, subnetsOf } from '../peers';
import { DirectReach } from '../direct-reach';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { TunnelBackend } from '../userspace';
import { IPIP_DEVICE, IPIP_OVERHEAD } from './constants';

const PROTOCOL = BACKEND_ROUTE_PROTOCOL.ipip;

export class UserspaceIpipBackend extends TunnelBackend {
  readonly type = 'ipip';
  private local?: LocalNode;
  private direct?: DirectReach;

  constructor(nl: Netlink, public directRouting: boolean, ctx: BackendContext) {
    super(nl, PROTOCOL, {
      backendType: 'ipip', mode: 'ipip', tunName: IPIP_DEVICE, overhead: IPIP_OVERHEAD,
      nl, log: ctx.log, requestReconcile: ctx.requestReconcile,
    });
  }
  async start(local: LocalNode): Promise<BackendStart> {
    const mtu = this.tunnel.check(local);
    this.local = local;
    this.direct = new DirectReach(this.nl, local.extIface);
    return { mtu };
  }

  async reconcile(own: Lease, peers: readonly Lease[], opts: ReconcileOptions = {}): Promise<ReconcileReport> {
    const local = this.local;
    if (!local) throw new Error('ipip backend used before start()');
    const { carried, skipped } = partitionPeers(peers, this.type, own);
    const reach = this.direct!;
    if (this.directRouting) for (const problem of await reach.refresh(carried.map((p) => p.attrs.publicIP))) skipped.push(`ipip DirectRouting: ${problem}`);
    const direct = (peer: Lease) => this.directRouting && reach.isDirect(peer.attrs.publicIP);
    // The engine learns its peers before their routes exist, so no packet reaches it unrouted.
    const tunneled = carried.filter((p) => !direct(p));
    // The engine accepts IP-in-IP only from addresses in its table: every known node goes in (kernel ipip accepts
    // any sender), so a peer that starts sending ipip before its new lease reaches us is not dropped. Only routed
    // traffic enters the TUN, so the extra entries send nothing.
    const table = new Map<string, Lease>();
    for (const p of [...(opts.known ?? []), ...(opts.retained ?? []), ...tunneled]) {
      if (p.key !== own.key && p.attrs.publicIP !== own.attrs.publicIP && p.attrs.publicIP !== '0.0.0.0') table.set(p.subnet.toString(), p);
    }
    const link = await this.tunnel.ensure(own, [...table.values()].map((p) => ({ subnet: p.subnet.toString(), publicIP: p.attrs.publicIP })));
    const routes: WantedRoute[] = carried.map((peer) => {
      const dst = peer.subnet.toString();
      return direct(peer)
        ? { dst, gateway: peer.attrs.publicIP, dev: local.extIface.name, ifindex: local.extIface.index, onlink: false }
        : { dst, dev: link.name, ifindex: link.index, onlink: false };
    });
    return reconcileRoutes(this.nl, PROTOCOL, routes, skipped, subnetsOf(opts.retained));
  }
}
