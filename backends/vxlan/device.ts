/**
 * The vxlan device `flannel.<VNI>`: adopted when one with the wanted
 * settings exists (so its MAC — the VTEP MAC every peer has programmed —
 * survives restarts), created otherwise with a MAC derived from the node's
 * address and the VNI, so that even a recreated device keeps the MAC peers
 * already hold.
 */
import { IP } from '../../lib/ip';
import type { LinkInfo, Netlink, VxlanSpec } from '../../lib/netlink';
import { vxlanMismatches } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';

export function deviceName(vni: number): string {
  return `flannel.${vni}`;
}

/**
 * The name of a vxlan device that runs beside another of the same VNI on
 * another port (a migration of Port or GBP): `vx<port>.<VNI>`.
 */
export function besideDeviceName(port: number, vni: number): string {
  return `vx${port}.${vni}`;
}

/** flanneld's IPv6 vxlan device, `flannel-v6.<VNI>`, beside `flannel.<VNI>` in dual stack. */
export function ipv6DeviceName(vni: number): string {
  return `flannel-v6.${vni}`;
}

/**
 * The IPv6 device that runs with the IPv4 device `device` of VNI `vni`:
 * only flanneld's `flannel.<VNI>` has one; a vxlan backend running beside
 * it under another name (a Port or GBP migration) carries IPv4 only.
 */
export function ipv6DeviceFor(device: string, vni: number): string | undefined {
  return device === deviceName(vni) ? ipv6DeviceName(vni) : undefined;
}

/** Names twill gives vxlan devices, for finding them again after a restart. */
export const VXLAN_DEVICE_PATTERN = /^(flannel\.\d+|vx\d+\.\d+)$/;

/** flanneld's IPv6 vxlan device names (`ipv6DeviceName`). */
export const IPV6_DEVICE_PATTERN = /^flannel-v6\.\d+$/;

/**
 * 0e:VV:a:b:c:d — locally administered, unicast; VV is the VNI's low byte
 * and a.b.c.d the node's IPv4 address (the low 32 bits of its IPv6 address
 * on an IPv6-only node), so nodes (and VNIs on one node) differ.
 */
export function derivedVtepMac(address: string, vni: number): string {
  const v = IP.parse(address).value & 0xffffffffn;
  const bytes = [0x0e, vni & 0xff, Number((v >> 24n) & 0xffn), Number((v >> 16n) & 0xffn), Number((v >> 8n) & 0xffn), Number(v & 0xffn)];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The IPv6 device's MAC: as `derivedVtepMac`, with 1e for 0e, so that it differs from the IPv4 device's. */
export function derivedVtepMacV6(address: string, vni: number): string {
  return `1e${derivedVtepMac(address, vni).slice(2)}`;
}

/**
 * The IPv6 link-local address (EUI-64) of a VTEP MAC: the gateway of the
 * routes over `flannel-v6.<VNI>`. flanneld uses the peer's subnet address
 * with `onlink`, but the kernel refuses an IPv6 onlink gateway that another
 * device's route covers (EINVAL, "Nexthop has invalid gateway or device
 * mismatch"): exactly the case of a peer's subnet routed by host-gw or
 * another backend during a migration, so the switch could not be one atomic
 * replace. A link-local gateway needs no such lookup; the wire is the same
 * (the inner frame goes to the peer's VTEP MAC).
 */
export function vtepLinkLocal(mac: string): string {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  const group = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
  return IP.parse(`fe80::${group(b[0] ^ 0x02, b[1])}:${group(b[2], 0xff)}:${group(0xfe, b[3])}:${group(b[4], b[5])}`, 6).toString();
}

/** Makes sure the device exists with `spec`'s settings; returns it (adopted or new). */
export async function ensureVxlanDevice(nl: Netlink, spec: VxlanSpec, log: Log): Promise<LinkInfo> {
  const existing = await nl.getLink(spec.name);
  if (existing) {
    const mismatches = existing.kind === 'vxlan' ? vxlanMismatches(existing, spec) : [`it is a ${existing.kind ?? 'plain'} device, not vxlan`];
    if (mismatches.length === 0) return existing;
    // Learning changes in place; recreating the device would drop its FDB and routes.
    if (mismatches.length === 1 && existing.vxlan && existing.vxlan.learning !== spec.learning) {
      await nl.setVxlanLearning(existing.index, spec.learning);
      log.info(`${spec.name}: learning turned ${spec.learning ? 'on' : 'off'} in place`);
      return { ...existing, vxlan: { ...existing.vxlan, learning: spec.learning } };
    }
    log.warn(`recreating ${spec.name}: ${mismatches.join('; ')}`);
    await nl.deleteLink(existing.index);
  }
  const created = await nl.createVxlan(spec);
  log.info(`created ${spec.name}`, { vni: spec.vni, port: spec.port, mac: spec.mac });
  return created;
}
