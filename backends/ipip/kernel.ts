/**
 * ipip in kernel mode: device `flannel.ipip` (remote any, local = the interface
 * address), MTU external − 20, and per peer
 * `route <subnet> via <PublicIP> dev flannel.ipip onlink` — or, with
 * DirectRouting, a plain route via the external interface to peers on the
 * same link. Kernels without ipip support are detected at start and
 * refused with a message that says so and what to use instead.
 */
import type { Lease } from '../../lib/subnet';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import { isUnsupportedLinkKind } from '../../lib/netlink';
import type { BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from '../backend';
import { BackendUnavailableError } from '../backend';
import type { WantedRoute } from '../kernel-state';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { RouteBackend } from '../route-backend';
import { DirectReach } from '../direct-reach';
import { IPIP_DEVICE, IPIP_OVERHEAD, NO_KERNEL_IPIP } from './constants';

export class KernelIpipBackend extends RouteBackend {
  readonly type = 'ipip';
  readonly mode = 'kernel';
  protected readonly protocol = BACKEND_ROUTE_PROTOCOL.ipip;
  private local?: LocalNode;
  private link?: LinkInfo;
  private direct?: DirectReach;
  private mtu = 0;

  constructor(nl: Netlink, public directRouting: boolean) {
    super(nl);
  }

  async start(local: LocalNode): Promise<BackendStart> {
    this.local = local;
    this.mtu = local.extIface.mtu - IPIP_OVERHEAD;
    this.direct = new DirectReach(this.nl, local.extIface);
    await this.ensureDevice();
    return { mtu: this.mtu };
  }

  protected override async prepare(own: Lease): Promise<void> {
    const link = await this.ensureDevice();
    const cidr = `${own.subnet.ip.toString()}/32`;
    const addrs = await this.nl.listAddresses(link.index, 4);
    if (!addrs.some((a) => a.cidr === cidr)) await this.nl.replaceAddress(link.index, cidr);
    for (const a of addrs) if (a.cidr !== cidr) await this.nl.deleteAddress(link.index, a.cidr);
  }

  override async reconcile(own: Lease, peers: readonly Lease[], opts: ReconcileOptions = {}): Promise<ReconcileReport> {
    const problems = this.directRouting ? await this.direct!.refresh(peers.filter((p) => p.key !== own.key).map((p) => p.attrs.publicIP)) : [];
    const report = await super.reconcile(own, peers, opts);
    return { ...report, skipped: [...report.skipped, ...problems.map((p) => `ipip DirectRouting: ${p}`)] };
  }

  protected routeTo(peer: Lease): WantedRoute {
    const local = this.local!;
    const dst = peer.subnet.toString();
    if (this.directRouting && this.direct!.isDirect(peer.attrs.publicIP)) {
      return { dst, gateway: peer.attrs.publicIP, dev: local.extIface.name, ifindex: local.extIface.index, onlink: false };
    }
    return { dst, gateway: peer.attrs.publicIP, dev: IPIP_DEVICE, ifindex: this.link!.index, onlink: true };
  }

  override async teardown(): Promise<void> {
    await super.teardown();
    if (await this.nl.getLink(IPIP_DEVICE)) await this.nl.deleteLink(IPIP_DEVICE);
  }

  private async ensureDevice(): Promise<LinkInfo> {
    const local = this.local!;
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
    this.link = link;
    return link;
  }
}
