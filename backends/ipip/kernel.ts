/**
 * ipip in kernel mode: device `flannel.ipip` (remote any, local = the interface
 * address), MTU external − 20, and per peer
 * `route <subnet> via <PublicIP> dev flannel.ipip onlink` — or, with
 * DirectRouting, a plain route via the external interface to peers the
 * kernel reaches directly. Kernels without ipip support are detected at
 * start and refused with a message that says so and what to use instead.
 */
import type { LinkInfo, Netlink } from '../../lib/netlink';
import { isUnsupportedLinkKind } from '../../lib/netlink';
import type { AssignedPeers, BackendStart, LocalNode, Peer, PlanInput } from '../backend';
import { BackendUnavailableError } from '../backend';
import type { KernelState, WantedRoute } from '../kernel-state';
import { ipipIntake } from '../intake';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { RouteBackend, routeViaExternal } from '../route-backend';
import { IPIP_DEVICE, IPIP_OVERHEAD, NO_KERNEL_IPIP } from './constants';

export class KernelIpipBackend extends RouteBackend {
  readonly type = 'ipip';
  readonly mode = 'kernel';
  readonly routeProtocol = BACKEND_ROUTE_PROTOCOL.ipip;
  private local?: LocalNode;
  private mtu = 0;

  constructor(nl: Netlink, public directRouting: boolean) {
    super(nl);
  }

  get usesReach(): boolean {
    return this.directRouting;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    this.local = local;
    this.mtu = local.extIface.mtu - IPIP_OVERHEAD;
    await this.prepare();
    return { mtu: this.mtu };
  }

  /** Routes as every route backend plans them; the kernel's ipip device takes IP protocol 4 from anyone, hence the intake. */
  override desired(input: PlanInput, peers: AssignedPeers): KernelState {
    return { ...super.desired(input, peers), intake: [ipipIntake()] };
  }

  protected routeTo(input: PlanInput, peer: Peer): WantedRoute {
    if (this.directRouting && input.reach(peer.publicIP)) return routeViaExternal(input, peer);
    const link = input.device!;
    return { dst: peer.subnet.toString(), gateway: peer.publicIP, dev: link.name, ifindex: link.index, onlink: true };
  }

  override async teardown(): Promise<void> {
    if (await this.nl.getLink(IPIP_DEVICE)) await this.nl.deleteLink(IPIP_DEVICE);
  }

  override async prepare(): Promise<LinkInfo> {
    const local = this.local;
    if (!local) throw new Error('ipip backend used before start()');
    let link = await this.nl.getLink(IPIP_DEVICE);
    if (link && link.kind !== 'ipip') {
      // The TUN device of an earlier userspace run: the kernel device takes its place.
      await this.nl.deleteLink(IPIP_DEVICE);
      link = undefined;
    }
    if (!link) {
      try {
        link = await this.nl.createIpip({ name: IPIP_DEVICE, local: local.extIface.ipv4 ?? local.publicIP, dev: local.extIface.index, mtu: this.mtu });
      } catch (err) {
        if (isUnsupportedLinkKind(err)) throw new BackendUnavailableError('ipip', NO_KERNEL_IPIP);
        throw err;
      }
    }
    if (link.mtu !== this.mtu) await this.nl.setMtu(link.index, this.mtu);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }
}
