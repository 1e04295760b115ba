/**
 * The vxlan backend (flanneld-compatible). Per peer it plans:
 *   neighbour  <peer subnet IP> lladdr <VtepMAC> nud permanent  dev flannel.<VNI>
 *   FDB        <VtepMAC> dst <PublicIP> self permanent          dev flannel.<VNI>
 *   route      <peer subnet> via <peer subnet IP> onlink         dev flannel.<VNI>
 * With DirectRouting, a peer the kernel reaches directly (backends/direct-reach.ts,
 * as flanneld asks the kernel too) gets only
 * `route <peer subnet> via <PublicIP> dev <ext>`.
 *
 * In dual stack (this node publishes a PublicIPv6), as flanneld, a second
 * device `flannel-v6.<VNI>` (VXLAN over the IPv6 underlay, its own VTEP MAC
 * published as BackendV6Data) carries the IPv6 subnets with the same three
 * entries per peer in IPv6: neighbour, FDB dst <PublicIPv6>, route. The
 * neighbour and gateway are the VTEP MAC's link-local address rather than
 * flanneld's onlink subnet address (see `vtepLinkLocal`). Pods get the
 * smaller MTU of the two devices, so that a full-size IPv6 packet fits the
 * IPv6 underlay too (flanneld writes the IPv4 device's). One planner serves both families
 * (`desiredFamily`), each with its own device, data and DirectRouting
 * reachability (a peer's PublicIPv6 for IPv6). In an IPv6-only network only
 * `flannel-v6.<VNI>` exists, as in flanneld.
 *
 * Its lifecycle is the device: adopted when it exists with the wanted
 * settings (its MAC is the VTEP MAC every peer has programmed), recreated if
 * someone deleted it.
 */
import type { LinkInfo, Netlink, VxlanSpec } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';
import type { IPNet } from '../../lib/ip';
import { carriesIPv4, leaseLabel } from '../../lib/subnet/lease';
import type { AssignedPeers, Backend, BackendStart, InstanceSlot, LocalNode, Peer, PlanInput } from '../backend';
import { BackendUnavailableError, localCarriesIPv4 } from '../backend';
import { routeProtocol } from '../route-protocols';
import type { KernelState, WantedFdb, WantedNeighbor, WantedRoute } from '../kernel-state';
import { vxlanIntake } from '../intake';
import { besideDeviceName, ensureVxlanDevice, deviceName, derivedVtepMac, derivedVtepMacV6, ipv6DeviceFor, ipv6DeviceName, vtepLinkLocal } from './device';
import { vxlanMtus, type VxlanSettings } from './settings';

const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export interface VxlanLeaseData {
  readonly VNI: number;
  readonly VtepMAC: string;
}

export class VxlanBackend implements Backend {
  readonly type = 'vxlan';
  readonly mode = 'kernel';
  /** The routes this backend owns carry this number (its slot's: two vxlan backends may run side by side). */
  readonly routeProtocol: number;
  /** The IPv4 device's spec; absent on an IPv6-only node. */
  private spec?: VxlanSpec;
  /** The IPv6 device's spec, in dual stack and IPv6 only. */
  private v6Spec?: VxlanSpec;

  constructor(private readonly settings: VxlanSettings, private readonly nl: Netlink, private readonly log: Log, slot: InstanceSlot = 0) {
    this.routeProtocol = routeProtocol('vxlan', slot);
  }

  get usesReach(): boolean {
    return this.settings.directRouting;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    if (!localCarriesIPv4(local)) {
      // IPv6 only: as flanneld, no flannel.<VNI>, and only BackendV6Data is published.
      const v6 = await this.startIPv6(local, local.publicIPv6);
      if (!v6) throw new BackendUnavailableError('vxlan', 'vxlan cannot run: the network is IPv6-only but this node has no PublicIPv6 to send VXLAN from');
      return { backendV6Data: v6.data, mtu: v6.mtu };
    }
    const localIP = local.extIface.ipv4 ?? local.publicIP;
    const mtu = vxlanMtus(this.settings, local.extIface.mtu, false).v4;
    this.spec = {
      name: await this.freeDeviceName(),
      vni: this.settings.vni,
      port: this.settings.port,
      localIP,
      dev: local.extIface.index,
      learning: this.settings.learning,
      gbp: this.settings.gbp,
      mtu,
      mac: derivedVtepMac(localIP, this.settings.vni),
    };
    const link = await this.prepare();
    const data: VxlanLeaseData = { VNI: this.settings.vni, VtepMAC: link?.mac ?? this.spec.mac! };
    if (!ipv6DeviceFor(this.spec.name, this.settings.vni) && local.publicIPv6) {
      this.log.warn(`vxlan VNI ${this.settings.vni} port ${this.settings.port} runs beside another vxlan backend as ${this.spec.name}; it carries IPv4 only`);
      return { backendData: data, mtu };
    }
    const v6 = await this.startIPv6(local, localIP);
    if (!v6) return { backendData: data, mtu };
    return { backendData: data, backendV6Data: v6.data, mtu: vxlanMtus(this.settings, local.extIface.mtu, true).pod };
  }

  /**
   * The IPv6 device `flannel-v6.<VNI>`; undefined when this node publishes
   * no PublicIPv6. `macSeed` is the address its derived MAC comes from (the
   * IPv4 one in dual stack, as before, so restarts keep it).
   */
  private async startIPv6(local: LocalNode, macSeed: string | undefined): Promise<{ data: VxlanLeaseData; mtu: number } | undefined> {
    if (!local.publicIPv6 || !macSeed) return undefined;
    const name = ipv6DeviceName(this.settings.vni);
    if (!this.spec) {
      // IPv6 only: another vxlan backend of other settings (a migration) may hold the one IPv6 device name.
      const existing = await this.nl.getLink(name);
      const vxlan = existing?.kind === 'vxlan' ? existing.vxlan : undefined;
      if (vxlan && (vxlan.port !== this.settings.port || vxlan.gbp !== this.settings.gbp)) {
        throw new BackendUnavailableError('vxlan', `cannot run vxlan VNI ${this.settings.vni} port ${this.settings.port} beside the vxlan backend that holds ${name} (port ${vxlan.port}): ` +
          'in an IPv6-only network two vxlan backends of one VNI cannot run side by side; change the VNI as well');
      }
    }
    const mtu = vxlanMtus(this.settings, local.extIface.mtu, true).v6;
    this.v6Spec = {
      name,
      vni: this.settings.vni,
      port: this.settings.port,
      localIP: local.publicIPv6,
      dev: local.extIface.index,
      learning: this.settings.learning,
      gbp: this.settings.gbp,
      mtu,
      mac: derivedVtepMacV6(macSeed, this.settings.vni),
    };
    const link = await this.prepareIPv6();
    return { data: { VNI: this.settings.vni, VtepMAC: link?.mac ?? this.v6Spec.mac! }, mtu };
  }

  async prepareIPv6(): Promise<LinkInfo | undefined> {
    return this.v6Spec ? this.ensure(this.v6Spec) : undefined;
  }

  /** The IPv4 device as it is now; undefined on an IPv6-only node, which has none. */
  async prepare(): Promise<LinkInfo | undefined> {
    if (this.spec) return this.ensure(this.spec);
    if (this.v6Spec) return undefined;
    throw new Error('vxlan backend used before start()');
  }

  private async ensure(spec: VxlanSpec): Promise<LinkInfo> {
    const link = await ensureVxlanDevice(this.nl, spec, this.log);
    if (link.mtu !== spec.mtu) await this.nl.setMtu(link.index, spec.mtu!);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }

  /**
   * One plan per address family the own lease holds, on that family's
   * device. Without a device in the input (a reader that does not know
   * it), that family's routes are left as they are rather than planned away.
   */
  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    if (carriesIPv4(input.own) && !input.device) throw new Error('vxlan backend planned without its device');
    const plans = [IPV4_VIEW, IPV6_VIEW].map((view) => this.desiredFamily(view, input, peers));
    return {
      protocol: this.routeProtocol,
      routes: plans.flatMap((p) => p.routes),
      devices: plans.flatMap((p) => p.devices),
      keepRoutes: plans.flatMap((p) => p.keepRoutes),
      skipped: plans.flatMap((p) => p.skipped),
      // flannel-v6.<VNI> takes VXLAN over the IPv6 underlay on the same port.
      intake: [
        ...(carriesIPv4(input.own) ? [vxlanIntake(this.settings.port)] : []),
        ...(input.own.ipv6Subnet && input.local.publicIPv6 ? [vxlanIntake(this.settings.port, 6)] : []),
      ],
    };
  }

  /**
   * One family's half of the plan. Per peer holding a subnet of that family:
   * neighbour, FDB entry and route via the gateway on the family's device; with
   * DirectRouting, a peer whose public address of that family the kernel
   * reaches directly gets a plain route via that address instead.
   */
  private desiredFamily(view: FamilyView, input: PlanInput, peers: AssignedPeers): Pick<KernelState, 'routes' | 'devices' | 'keepRoutes' | 'skipped'> {
    const none = { routes: [], devices: [], keepRoutes: [], skipped: [] };
    const ownSubnet = view.subnet(input.own);
    if (!ownSubnet || (view.family === 6 && !input.local.publicIPv6)) return none;
    const subnetsOf = (ps: readonly Peer[]) => ps.flatMap((p) => view.subnet(p)?.toString() ?? []);
    const link = view.device(input);
    if (!link) return { ...none, keepRoutes: subnetsOf([...peers.carried, ...peers.leaving]) };
    const ext = input.local.extIface;
    const routes: WantedRoute[] = [];
    const neighbors: WantedNeighbor[] = [];
    const fdb: WantedFdb[] = [];
    const skipped: string[] = [];
    for (const peer of peers.carried) {
      const subnet = view.subnet(peer);
      if (!subnet) continue; // it has no subnet of this family
      const problem = view.problem(peer, link.mac);
      if (problem) {
        skipped.push(problem);
        continue;
      }
      const dst = subnet.toString();
      const publicIP = view.publicIP(peer)!;
      const vtep = vtepOf(view.data(peer))!;
      if (this.settings.directRouting && input.reach(publicIP)) {
        routes.push({ dst, gateway: publicIP, dev: ext.name, ifindex: ext.index, onlink: false, peer: peer.key });
        continue;
      }
      const { gateway, onlink } = view.gateway(subnet, vtep);
      neighbors.push({ ip: gateway, mac: vtep, peer: peer.key });
      fdb.push({ mac: vtep, dst: publicIP, peer: peer.key });
      routes.push({ dst, gateway, dev: link.name, ifindex: link.index, onlink, peer: peer.key });
    }
    // A peer moving to another backend keeps its FDB and neighbour entries until its new route is in place.
    for (const peer of peers.leaving) {
      const subnet = view.subnet(peer);
      const publicIP = view.publicIP(peer);
      const vtep = vtepOf(view.data(peer));
      if (!subnet || !publicIP || !vtep || vtep === link.mac) continue;
      neighbors.push({ ip: view.gateway(subnet, vtep).gateway, mac: vtep });
      fdb.push({ mac: vtep, dst: publicIP });
    }
    const hostLen = view.family === 4 ? 32 : 128;
    return {
      routes,
      devices: [{ name: link.name, ifindex: link.index, ...(view.family === 6 ? { family: 6 as const } : {}), addresses: [`${ownSubnet.ip.toString()}/${hostLen}`], neighbors, fdb }],
      keepRoutes: subnetsOf(peers.leaving),
      skipped,
    };
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {
    for (const spec of [this.spec, this.v6Spec]) {
      if (spec && (await this.nl.getLink(spec.name))) await this.nl.deleteLink(spec.name);
    }
  }

  /**
   * flanneld's `flannel.<VNI>`, unless a vxlan device of that name serves
   * another port or GBP setting: that is the backend this one runs beside
   * during a migration, and it keeps its device. A device of this backend
   * found under either name is adopted (a restart, or new settings applied
   * in place).
   */
  private async freeDeviceName(): Promise<string> {
    const { vni, port, gbp } = this.settings;
    const preferred = deviceName(vni);
    const beside = besideDeviceName(port, vni);
    const existing = await this.nl.getLink(preferred);
    const vxlan = existing?.kind === 'vxlan' ? existing.vxlan : undefined;
    if (vxlan && vxlan.port === port && vxlan.gbp === gbp) return preferred;
    if ((await this.nl.getLink(beside))?.kind === 'vxlan') return beside;
    if (!vxlan) return preferred;
    if (beside.length > 15) {
      throw new BackendUnavailableError('vxlan', `cannot run vxlan VNI ${vni} port ${port} beside ${preferred}: the device name ${beside} is longer than the kernel's 15 characters`);
    }
    return beside;
  }
}

/** What the per-peer plan reads of one address family. */
interface FamilyView {
  readonly family: 4 | 6;
  /** The subnet of this family a lease or peer holds; undefined when none. */
  subnet(l: { subnet: IPNet; ipv6Subnet?: IPNet }): IPNet | undefined;
  /** The peer's underlay address of this family (PublicIP, PublicIPv6). */
  publicIP(p: Peer): string | undefined;
  /** What it publishes for this family's device (BackendData, BackendV6Data). */
  data(p: Peer): unknown;
  /** This family's device, as the plan input holds it. */
  device(input: PlanInput): LinkInfo | undefined;
  /** Why a peer holding a subnet of this family cannot be carried; undefined when it can. */
  problem(p: Peer, ownMac: string | undefined): string | undefined;
  /** The gateway of the route to a peer's subnet, which its neighbour entry maps to its VTEP MAC. */
  gateway(subnet: IPNet, vtep: string): { readonly gateway: string; readonly onlink: boolean };
}

const IPV4_VIEW: FamilyView = {
  family: 4,
  subnet: (l) => (carriesIPv4(l) ? l.subnet : undefined),
  publicIP: (p) => p.publicIP,
  data: (p) => p.data,
  device: (input) => input.device,
  // flanneld's: the peer's subnet address, on the link by `onlink`.
  gateway: (subnet) => ({ gateway: subnet.ip.toString(), onlink: true }),
  problem: (p, ownMac) => {
    const vtep = vtepOf(p.data);
    const label = `peer ${p.subnet.toString()} (${p.publicIP})`;
    if (!vtep) return `${label} has no valid BackendData.VtepMAC; skipping it`;
    if (vtep === ownMac) return `${label} claims this node's own VTEP MAC ${vtep}; ignoring it`;
    return undefined;
  },
};

const IPV6_VIEW: FamilyView = {
  family: 6,
  subnet: (l) => l.ipv6Subnet,
  publicIP: (p) => p.publicIPv6,
  data: (p) => p.v6Data,
  device: (input) => input.ipv6Device,
  // Not flanneld's onlink subnet address: the kernel refuses that while another device routes the subnet (see vtepLinkLocal).
  gateway: (_subnet, vtep) => ({ gateway: vtepLinkLocal(vtep), onlink: false }),
  problem: (p, ownMac) => {
    const vtep = vtepOf(p.v6Data);
    const label = `peer ${leaseLabel(p)}`;
    const dst = p.ipv6Subnet?.toString();
    if (!p.publicIPv6 || !vtep) return `${label} has the IPv6 subnet ${dst} but no ${p.publicIPv6 ? 'valid BackendV6Data.VtepMAC' : 'PublicIPv6'}; its IPv6 subnet is not routed`;
    if (vtep === ownMac) return `${label} claims this node's own IPv6 VTEP MAC ${vtep}; its IPv6 subnet is not routed`;
    return undefined;
  },
};

/** The peer's VTEP MAC (lower case), or undefined when its BackendData has no valid one. */
export function vtepOf(data: unknown): string | undefined {
  const d = data as Partial<Record<string, unknown>> | undefined;
  const mac = typeof d?.VtepMAC === 'string' ? d.VtepMAC.toLowerCase() : undefined;
  return mac && MAC_PATTERN.test(mac) ? mac : undefined;
}

