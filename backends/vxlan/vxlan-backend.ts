/**
 * The vxlan backend (flanneld-compatible). Per peer on the vxlan backend:
 *   neighbour  <peer subnet IP> lladdr <VtepMAC> nud permanent  dev flannel.<VNI>
 *   FDB        <VtepMAC> dst <PublicIP> self permanent          dev flannel.<VNI>
 *   route      <peer subnet> via <peer subnet IP> onlink         dev flannel.<VNI>
 * With DirectRouting, a peer on the same link-layer network gets only
 * `route <peer subnet> via <PublicIP> dev <ext>`: one the kernel reaches
 * without a gateway through the external interface and whose ARP has not
 * failed (backends/direct-reach.ts), as flanneld asks the kernel too.
 *
 * reconcile() reads the device's neighbours and FDB entries and the routes
 * carrying vxlan's protocol number, and applies the difference; the device
 * itself is recreated if someone deleted it.
 */
import type { Lease } from '../../lib/subnet';
import type { Netlink, VxlanSpec } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';
import type { Backend, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from '../backend';
import { routeProtocol } from '../route-protocols';
import { BackendUnavailableError } from '../backend';
import type { InstanceSlot } from '../backend';
import { diffFdb, diffNeighbors, diffRoutes, emptyPlan, WantedFdb, WantedNeighbor, WantedRoute } from '../kernel-state';
import { applyPlan, deleteRoutesOf } from '../apply-plan';
import { partitionPeers, subnetsOf } from '../peers';
import { DirectReach } from '../direct-reach';
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
  private local?: LocalNode;
  private spec?: VxlanSpec;
  private mtu = 0;
  private direct?: DirectReach;

  /** The routes this backend owns carry this number (its slot's: two vxlan backends may run side by side). */
  private readonly protocol: number;

  constructor(private readonly settings: VxlanSettings, private readonly nl: Netlink, private readonly log: Log, slot: InstanceSlot = 0) {
    this.protocol = routeProtocol('vxlan', slot);
  }

  async start(local: LocalNode): Promise<BackendStart> {
    this.local = local;
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
    this.direct = new DirectReach(this.nl, local.extIface);
    const link = await this.ensureDevice();
    const data: VxlanLeaseData = { VNI: this.settings.vni, VtepMAC: link.mac ?? this.spec.mac! };
    return { backendData: data, mtu: this.mtu };
  }

  async reconcile(own: Lease, peers: readonly Lease[], opts: ReconcileOptions = {}): Promise<ReconcileReport> {
    const local = this.required(this.local);
    const link = await this.ensureDevice();
    await this.ensureAddress(link.index, `${own.subnet.ip.toString()}/32`);

    const { carried, skipped } = partitionPeers(peers, this.type, own);
    const direct = this.required(this.direct);
    if (this.settings.directRouting) {
      for (const problem of await direct.refresh(carried.map((p) => p.attrs.publicIP))) this.log.warn(`vxlan DirectRouting: ${problem}`);
    }
    const routes: WantedRoute[] = [];
    const neighbors: WantedNeighbor[] = [];
    const fdb: WantedFdb[] = [];
    for (const peer of carried) {
      const data = vtepOf(peer);
      if (typeof data === 'string') {
        skipped.push(data);
        continue;
      }
      if (data.VtepMAC === link.mac) {
        skipped.push(`peer ${peer.subnet.toString()} (${peer.attrs.publicIP}) claims this node's own VTEP MAC ${data.VtepMAC}; ignoring it`);
        continue;
      }
      const dst = peer.subnet.toString();
      if (this.settings.directRouting && direct.isDirect(peer.attrs.publicIP)) {
        routes.push({ dst, gateway: peer.attrs.publicIP, dev: local.extIface.name, ifindex: local.extIface.index, onlink: false });
        continue;
      }
      const gateway = peer.subnet.ip.toString();
      neighbors.push({ ip: gateway, mac: data.VtepMAC });
      fdb.push({ mac: data.VtepMAC, dst: peer.attrs.publicIP });
      routes.push({ dst, gateway, dev: link.name, ifindex: link.index, onlink: true });
    }

    // A peer moving to another backend keeps its FDB and ARP entries until its new route is in place.
    for (const peer of opts.retained ?? []) {
      const data = vtepOf(peer);
      if (typeof data === 'string' || data.VtepMAC === link.mac) continue;
      neighbors.push({ ip: peer.subnet.ip.toString(), mac: data.VtepMAC });
      fdb.push({ mac: data.VtepMAC, dst: peer.attrs.publicIP });
    }
    const keep = subnetsOf(opts.retained);
    const [haveRoutes, haveNeighbors, haveFdb] = await Promise.all([
      this.nl.listRoutes({ family: 4, protocol: this.protocol }),
      this.nl.listNeighbors(link.index, 4),
      this.nl.listFdb(link.index),
    ]);
    const plan = emptyPlan();
    // FDB and ARP first, so a route never points at a VTEP the kernel cannot resolve.
    diffFdb(plan, link.index, fdb, haveFdb.filter((e) => e.ifindex === link.index));
    diffNeighbors(plan, link.index, neighbors, haveNeighbors.filter((n) => n.ifindex === link.index && n.permanent));
    diffRoutes(plan, routes, haveRoutes, this.protocol, keep);
    const outcome = await applyPlan(this.nl, plan);
    return { changed: outcome.changed, removed: outcome.removed, skipped, failures: outcome.failures };
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {
    const spec = this.spec;
    if (!spec) return;
    await deleteRoutesOf(this.nl, this.protocol);
    if (await this.nl.getLink(spec.name)) await this.nl.deleteLink(spec.name);
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

  private async ensureDevice() {
    const spec = this.required(this.spec);
    const link = await ensureVxlanDevice(this.nl, spec, this.log);
    if (link.mtu !== this.mtu) await this.nl.setMtu(link.index, this.mtu);
    if (!link.up) await this.nl.setLinkUp(link.index);
    return link;
  }

  /** The device holds exactly `<own subnet IP>/32` (an old subnet's address goes). */
  private async ensureAddress(ifindex: number, cidr: string): Promise<void> {
    const addrs = await this.nl.listAddresses(ifindex, 4);
    if (!addrs.some((a) => `${a.address}/${a.prefixLen}` === cidr)) await this.nl.replaceAddress(ifindex, cidr);
    for (const a of addrs) {
      const have = `${a.address}/${a.prefixLen}`;
      if (have !== cidr) await this.nl.deleteAddress(ifindex, have);
    }
  }

  private required<T>(v: T | undefined): T {
    if (v === undefined) throw new Error('vxlan backend used before start()');
    return v;
  }
}

/** The peer's VTEP, or the reason its lease cannot be used. */
function vtepOf(peer: Lease): VxlanLeaseData | string {
  const d = peer.attrs.backendData as Partial<Record<string, unknown>> | undefined;
  const mac = typeof d?.VtepMAC === 'string' ? d.VtepMAC.toLowerCase() : undefined;
  if (!mac || !MAC_PATTERN.test(mac)) {
    return `peer ${peer.subnet.toString()} (${peer.attrs.publicIP}) has no valid BackendData.VtepMAC; skipping it`;
  }
  return { VNI: typeof d?.VNI === 'number' ? d.VNI : 1, VtepMAC: mac };
}
