/**
 * The vxlan backend (flanneld-compatible). Per peer it plans:
 *   neighbour  <peer subnet IP> lladdr <VtepMAC> nud permanent  dev flannel.<VNI>
 *   FDB        <VtepMAC> dst <PublicIP> self permanent          dev flannel.<VNI>
 *   route      <peer subnet> via <peer subnet IP> onlink         dev flannel.<VNI>
 * With DirectRouting, a peer the kernel reaches directly (backends/direct-reach.ts,
 * as flanneld asks the kernel too) gets only
 * `route <peer subnet> via <PublicIP> dev <ext>`.
 *
 * Its lifecycle is the device: adopted when it exists with the wanted
 * settings (its MAC is the VTEP MAC every peer has programmed), recreated if
 * someone deleted it.
 */
import type { LinkInfo, Netlink, VxlanSpec } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';
import type { AssignedPeers, Backend, BackendStart, InstanceSlot, LocalNode, PlanInput } from '../backend';
import { BackendUnavailableError } from '../backend';
import { routeProtocol } from '../route-protocols';
import type { KernelState, WantedFdb, WantedNeighbor, WantedRoute } from '../kernel-state';
import { vxlanIntake } from '../intake';
import { besideDeviceName, ensureVxlanDevice, deviceName, derivedVtepMac } from './device';
import type { VxlanSettings } from './settings';

const VXLAN_OVERHEAD = 50;
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

  constructor(private readonly settings: VxlanSettings, private readonly nl: Netlink, private readonly log: Log, slot: InstanceSlot = 0) {
    this.routeProtocol = routeProtocol('vxlan', slot);
  }

  get usesReach(): boolean {
    return this.settings.directRouting;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    const localIP = local.extIface.ipv4 ?? local.publicIP;
    this.mtu = this.settings.mtu ?? local.extIface.mtu - VXLAN_OVERHEAD;
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
    return { backendData: data, mtu: this.mtu };
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
    return {
      protocol: this.routeProtocol,
      routes,
      devices: [{ name: link.name, ifindex: link.index, addresses: [`${input.own.subnet.ip.toString()}/32`], neighbors, fdb }],
      keepRoutes: peers.leaving.map((p) => p.subnet.toString()),
      skipped,
      intake: [vxlanIntake(this.settings.port)],
    };
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {
    if (this.spec && (await this.nl.getLink(this.spec.name))) await this.nl.deleteLink(this.spec.name);
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

