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
 * IPv6 underlay too (flanneld writes the IPv4 device's).
 *
 * Its lifecycle is the device: adopted when it exists with the wanted
 * settings (its MAC is the VTEP MAC every peer has programmed), recreated if
 * someone deleted it.
 */
import type { LinkInfo, Netlink, VxlanSpec } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';
import type { AssignedPeers, Backend, BackendStart, InstanceSlot, LocalNode, Peer, PlanInput } from '../backend';
import { BackendUnavailableError } from '../backend';
import { routeProtocol } from '../route-protocols';
import type { KernelState, WantedFdb, WantedNeighbor, WantedRoute } from '../kernel-state';
import { vxlanIntake } from '../intake';
import { besideDeviceName, ensureVxlanDevice, deviceName, derivedVtepMac, derivedVtepMacV6, ipv6DeviceFor, vtepLinkLocal } from './device';
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
  private spec?: VxlanSpec;
  private mtu = 0;
  /** The IPv6 device's spec, in dual stack only. */
  private v6Spec?: VxlanSpec;

  constructor(private readonly settings: VxlanSettings, private readonly nl: Netlink, private readonly log: Log, slot: InstanceSlot = 0) {
    this.routeProtocol = routeProtocol('vxlan', slot);
  }

  get usesReach(): boolean {
    return this.settings.directRouting;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    const localIP = local.extIface.ipv4 ?? local.publicIP;
    this.mtu = vxlanMtus(this.settings, local.extIface.mtu, false).v4;
    this.spec = {
      name: await this.freeDeviceName(),
      vni: this.settings.vni,
      port: this.settings.port,
      localIP,
      dev: local.extIface.index,
      learning: this.settings.learning,
      gbp: this.settings.gbp,
      mtu: this.mtu,
      mac: derivedVtepMac(localIP, this.settings.vni),
    };
    const link = await this.prepare();
    const data: VxlanLeaseData = { VNI: this.settings.vni, VtepMAC: link.mac ?? this.spec.mac! };
    const v6 = await this.startIPv6(local, localIP);
    if (!v6) return { backendData: data, mtu: this.mtu };
    return { backendData: data, backendV6Data: v6.data, mtu: vxlanMtus(this.settings, local.extIface.mtu, true).pod };
  }

  /** Dual stack: the IPv6 device; undefined when this node publishes no PublicIPv6. */
  private async startIPv6(local: LocalNode, localIPv4: string): Promise<{ data: VxlanLeaseData; mtu: number } | undefined> {
    if (!local.publicIPv6 || !this.spec) return undefined;
    const name = ipv6DeviceFor(this.spec.name, this.settings.vni);
    if (!name) {
      this.log.warn(`vxlan VNI ${this.settings.vni} port ${this.settings.port} runs beside another vxlan backend as ${this.spec.name}; it carries IPv4 only`);
      return undefined;
    }
    const mtu = vxlanMtus(this.settings, local.extIface.mtu, true).v6;
    this.v6Spec = {
      ...this.spec,
      name,
      localIP: local.publicIPv6,
      mtu,
      mac: derivedVtepMacV6(localIPv4, this.settings.vni),
    };
    const link = await this.prepareIPv6();
    return { data: { VNI: this.settings.vni, VtepMAC: link?.mac ?? this.v6Spec.mac! }, mtu };
  }

  async prepareIPv6(): Promise<LinkInfo | undefined> {
    const spec = this.v6Spec;
    if (!spec) return undefined;
    const link = await ensureVxlanDevice(this.nl, spec, this.log);
    if (link.mtu !== spec.mtu) await this.nl.setMtu(link.index, spec.mtu!);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }

  async prepare(): Promise<LinkInfo> {
    if (!this.spec) throw new Error('vxlan backend used before start()');
    const link = await ensureVxlanDevice(this.nl, this.spec, this.log);
    if (link.mtu !== this.mtu) await this.nl.setMtu(link.index, this.mtu);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }

  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const link = input.device;
    if (!link) throw new Error('vxlan backend planned without its device');
    const ext = input.local.extIface;
    const routes: WantedRoute[] = [];
    const neighbors: WantedNeighbor[] = [];
    const fdb: WantedFdb[] = [];
    const skipped: string[] = [];
    for (const peer of peers.carried) {
      const vtep = vtepOf(peer.data);
      const label = `peer ${peer.subnet.toString()} (${peer.publicIP})`;
      if (!vtep) {
        skipped.push(`${label} has no valid BackendData.VtepMAC; skipping it`);
        continue;
      }
      if (vtep === link.mac) {
        skipped.push(`${label} claims this node's own VTEP MAC ${vtep}; ignoring it`);
        continue;
      }
      const dst = peer.subnet.toString();
      if (this.settings.directRouting && input.reach(peer.publicIP)) {
        routes.push({ dst, gateway: peer.publicIP, dev: ext.name, ifindex: ext.index, onlink: false, peer: peer.key });
        continue;
      }
      const gateway = peer.subnet.ip.toString();
      neighbors.push({ ip: gateway, mac: vtep, peer: peer.key });
      fdb.push({ mac: vtep, dst: peer.publicIP, peer: peer.key });
      routes.push({ dst, gateway, dev: link.name, ifindex: link.index, onlink: true, peer: peer.key });
    }
    // A peer moving to another backend keeps its FDB and ARP entries until its new route is in place.
    for (const peer of peers.leaving) {
      const vtep = vtepOf(peer.data);
      if (!vtep || vtep === link.mac) continue;
      neighbors.push({ ip: peer.subnet.ip.toString(), mac: vtep });
      fdb.push({ mac: vtep, dst: peer.publicIP });
    }
    const v6 = this.desiredIPv6(input, peers);
    return {
      protocol: this.routeProtocol,
      routes: [...routes, ...v6.routes],
      devices: [{ name: link.name, ifindex: link.index, addresses: [`${input.own.subnet.ip.toString()}/32`], neighbors, fdb }, ...v6.devices],
      keepRoutes: [...peers.leaving.map((p) => p.subnet.toString()), ...v6.keepRoutes],
      skipped: [...skipped, ...v6.skipped],
      // flannel-v6.<VNI> takes VXLAN over the IPv6 underlay on the same port.
      intake: [vxlanIntake(this.settings.port), ...(input.own.ipv6Subnet && input.local.publicIPv6 ? [vxlanIntake(this.settings.port, 6)] : [])],
    };
  }

  /**
   * The IPv6 half of the plan, on `flannel-v6.<VNI>`. Without the device
   * in the input (a reader that does not know it), the IPv6 routes are
   * left as they are rather than planned away.
   */
  private desiredIPv6(input: PlanInput, peers: AssignedPeers): Pick<KernelState, 'routes' | 'devices' | 'keepRoutes' | 'skipped'> {
    const none = { routes: [], devices: [], keepRoutes: [], skipped: [] };
    const ownV6 = input.own.ipv6Subnet;
    if (!ownV6 || !input.local.publicIPv6) return none;
    const v6Subnets = (ps: readonly Peer[]) => ps.flatMap((p) => (p.ipv6Subnet ? [p.ipv6Subnet.toString()] : []));
    const link = input.ipv6Device;
    if (!link) return { ...none, keepRoutes: v6Subnets([...peers.carried, ...peers.leaving]) };
    const ext = input.local.extIface;
    const routes: WantedRoute[] = [];
    const neighbors: WantedNeighbor[] = [];
    const fdb: WantedFdb[] = [];
    const skipped: string[] = [];
    for (const peer of peers.carried) {
      if (!peer.ipv6Subnet) continue; // an IPv4-only node
      const dst = peer.ipv6Subnet.toString();
      const vtep = vtepOf(peer.v6Data);
      if (!peer.publicIPv6 || !vtep) {
        skipped.push(`peer ${peer.subnet.toString()} has the IPv6 subnet ${dst} but no ${peer.publicIPv6 ? 'valid BackendV6Data.VtepMAC' : 'PublicIPv6'}; its IPv6 subnet is not routed`);
        continue;
      }
      if (vtep === link.mac) {
        skipped.push(`peer ${peer.subnet.toString()} claims this node's own IPv6 VTEP MAC ${vtep}; its IPv6 subnet is not routed`);
        continue;
      }
      if (this.settings.directRouting && input.reach(peer.publicIP)) {
        routes.push({ dst, gateway: peer.publicIPv6, dev: ext.name, ifindex: ext.index, onlink: false, peer: peer.key });
        continue;
      }
      const gateway = vtepLinkLocal(vtep);
      neighbors.push({ ip: gateway, mac: vtep, peer: peer.key });
      fdb.push({ mac: vtep, dst: peer.publicIPv6, peer: peer.key });
      routes.push({ dst, gateway, dev: link.name, ifindex: link.index, onlink: false, peer: peer.key });
    }
    for (const peer of peers.leaving) {
      const vtep = vtepOf(peer.v6Data);
      if (!peer.ipv6Subnet || !peer.publicIPv6 || !vtep || vtep === link.mac) continue;
      neighbors.push({ ip: vtepLinkLocal(vtep), mac: vtep });
      fdb.push({ mac: vtep, dst: peer.publicIPv6 });
    }
    return {
      routes,
      devices: [{ name: link.name, ifindex: link.index, family: 6, addresses: [`${ownV6.ip.toString()}/128`], neighbors, fdb }],
      keepRoutes: v6Subnets(peers.leaving),
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

/** The peer's VTEP MAC (lower case), or undefined when its BackendData has no valid one. */
export function vtepOf(data: unknown): string | undefined {
  const d = data as Partial<Record<string, unknown>> | undefined;
  const mac = typeof d?.VtepMAC === 'string' ? d.VtepMAC.toLowerCase() : undefined;
  return mac && MAC_PATTERN.test(mac) ? mac : undefined;
}

