/**
 * Which backends have left state in this node's kernel: what a restarting
 * agent must keep running (peers may still send over it, e.g. when the
 * agent was stopped in the middle of a migration) until no peer needs it.
 * Each backend is recognised by its own objects only: its device (with the
 * settings the device shows), or routes carrying its protocol number, which
 * also tells the slot of a second backend of one type (route-protocols.ts).
 */
import type { BackendConfig } from '../lib/config';
import type { Netlink } from '../lib/netlink';
import type { InstanceSlot } from './backend';
import { BACKEND_ROUTE_PROTOCOL, ownerOfProtocol } from './route-protocols';
import { IPIP_DEVICE } from './ipip/constants';
import { IPV6_DEVICE_PATTERN, VXLAN_DEVICE_PATTERN } from './vxlan/device';
import { UDP_BESIDE_DEVICE, UDP_DEVICE, portOfUdpAlias } from './udp';
import { WIREGUARD_DEVICE, portOfWireguardAlias } from './wireguard';
import { BIRD_METRIC, RTPROT_BIRD } from './bgp/bgp-backend';
import { birdConfigFor, birdRunning } from './bgp/bird-engine';
import { asnOf } from './bgp/bird-config';

export interface LeftOver {
  readonly config: BackendConfig;
  readonly slot: InstanceSlot;
  /** Its settings could not be read back (routes without a device, a TUN without twill's alias): they are a guess. */
  readonly guessed?: boolean;
  /** Its device, when it has one and it exists. */
  readonly device?: string;
}

export async function backendsInKernel(nl: Netlink): Promise<LeftOver[]> {
  // Both families: an IPv6-only node's backends own IPv6 routes alone.
  const [links, routes] = await Promise.all([nl.listLinks(), nl.listRoutes()]);
  const owners = routes.map((r) => ({ owner: ownerOfProtocol(r.protocol), ifindex: r.ifindex }));
  const slotsOf = (type: string) => new Set(owners.filter((o) => o.owner?.type === type).map((o) => o.owner!.slot));
  /** The slot whose routes lead through the device; 0 when none do. */
  const slotVia = (ifindex: number): InstanceSlot => owners.find((o) => o.ifindex === ifindex && o.owner)?.owner?.slot ?? 0;
  const found: LeftOver[] = [];

  const vxlans = links.filter((l) => l.kind === 'vxlan' && VXLAN_DEVICE_PATTERN.test(l.name) && l.vxlan);
  // An IPv6-only node's vxlan has only flanneld's IPv6 device (in dual stack it goes with flannel.<VNI>).
  vxlans.push(...links.filter((l) => l.kind === 'vxlan' && l.vxlan && IPV6_DEVICE_PATTERN.test(l.name) && !vxlans.some((v) => v.vxlan!.vni === l.vxlan!.vni)));
  for (const l of vxlans) {
    const v = l.vxlan!;
    found.push({ config: { type: 'vxlan', settings: { VNI: v.vni, Port: v.port, GBP: v.gbp, Learning: v.learning } }, slot: slotVia(l.index), device: l.name });
  }
  for (const slot of slotsOf('vxlan')) {
    if (!found.some((f) => f.config.type === 'vxlan' && f.slot === slot)) found.push({ config: { type: 'vxlan', settings: {} }, slot, guessed: true });
  }

  if (routes.some((r) => r.protocol === BACKEND_ROUTE_PROTOCOL['host-gw'])) found.push({ config: { type: 'host-gw', settings: {} }, slot: 0 });

  const ipip = links.find((l) => l.name === IPIP_DEVICE);
  if (ipip) found.push({ config: { type: 'ipip', settings: { Mode: ipip.kind === 'tun' ? 'userspace' : 'kernel' } }, slot: 0, device: ipip.name });
  else if (slotsOf('ipip').size) found.push({ config: { type: 'ipip', settings: {} }, slot: 0, guessed: true });

  const udpSlots = slotsOf('udp');
  for (const [name, slot] of [[UDP_DEVICE, 0], [UDP_BESIDE_DEVICE, 1]] as const) {
    const tun = links.find((l) => l.name === name);
    if (!tun && !udpSlots.has(slot)) continue;
    const port = portOfUdpAlias(tun?.alias);
    found.push({ config: { type: 'udp', settings: port !== undefined ? { Port: port } : {} }, slot, guessed: port === undefined, ...(tun ? { device: tun.name } : {}) });
  }

  // wireguard-go's TUN lives as long as wireguard-go: a restarting twilld finds both and adopts them.
  const wg = links.find((l) => l.name === WIREGUARD_DEVICE);
  if (wg || slotsOf('wireguard').size) {
    const port = portOfWireguardAlias(wg?.alias);
    found.push({ config: { type: 'wireguard', settings: port !== undefined ? { ListenPort: port } : {} }, slot: 0, guessed: port === undefined, ...(wg ? { device: wg.name } : {}) });
  }

  // bgp: the BIRD a twilld started (it outlives twilld), or the routes a killed one left.
  if (birdRunning() || routes.some((r) => r.protocol === RTPROT_BIRD && r.metric === BIRD_METRIC)) {
    // Its ASN is read back from the config it runs; the peers come from the leases anyway.
    const config = birdConfigFor();
    const asn = config !== undefined ? asnOf(config) : undefined;
    found.push({ config: { type: 'bgp', settings: asn !== undefined ? { ASN: asn } : {} }, slot: 0, guessed: true });
  }
  return found;
}
