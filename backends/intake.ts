/**
 * What a backend receives from the underlay: its "intake". A plan states it
 * (`KernelState.intake`) so that the tunnel guard (lib/guard) and
 * `twill diagnose` read it from the same place, and no one else restates
 * which port a backend listens on or where the inner packet starts.
 *
 * Offsets count bytes from the start of the outer transport header (nft's
 * `@th`): for UDP that is the UDP header, for IP protocol 4 the transport
 * header is the inner IPv4 header itself.
 */

export type IntakeKind = 'vxlan' | 'udp' | 'ipip';

/** The underlay family a backend receives on; the inner packets it checks are of the same family. */
export type UnderlayFamily = 4 | 6;

export interface Intake {
  readonly kind: IntakeKind;
  /**
   * The underlay: 4 (absent) for the IPv4 underlay between PublicIPs, whose
   * inner packets are IPv4; 6 for vxlan's `flannel-v6.<VNI>`, IPv6 inside
   * IPv6 between PublicIPv6 addresses.
   */
  readonly family?: UnderlayFamily;
  /** UDP destination port; absent for ipip (matched as IP protocol 4). */
  readonly port?: number;
  /** Bytes from the outer transport header to the inner IP header (IPv4, or IPv6 for family 6). */
  readonly inner: number;
  /** Where the inner frame's ethertype is (vxlan carries Ethernet): only frames of the intake's family (0x0800, 0x86dd) are source-checked. */
  readonly ethertypeAt?: number;
  /**
   * twill-dataplane behind this intake drops (and counts) inner sources
   * outside the sender's subnet itself, so the guard filters senders only:
   * a second check in nftables would cost every datagram a concatenated
   * interval lookup (measured: up to 10% of udp throughput) and add nothing.
   */
  readonly innerCheckedByEngine?: boolean;
}

const UDP_HEADER = 8;
const VXLAN_HEADER = 8;
const ETHERNET_HEADER = 14;

/** VXLAN on `port`: UDP header, VXLAN header, inner Ethernet, then the inner IP header (IPv6 over the IPv6 underlay). */
export function vxlanIntake(port: number, family: UnderlayFamily = 4): Intake {
  return {
    kind: 'vxlan', port, inner: UDP_HEADER + VXLAN_HEADER + ETHERNET_HEADER, ethertypeAt: UDP_HEADER + VXLAN_HEADER + 12,
    ...(family === 6 ? { family } : {}),
  };
}

export function intakeFamily(i: Intake): UnderlayFamily {
  return i.family ?? 4;
}

/** flanneld's udp on `port`: the inner IPv4 packet is the whole UDP payload; the engine checks its source. */
export function udpIntake(port: number): Intake {
  return { kind: 'udp', port, inner: UDP_HEADER, innerCheckedByEngine: true };
}

/** IP protocol 4 (kernel ipip and the userspace engine's raw socket alike). */
export function ipipIntake(): Intake {
  return { kind: 'ipip', inner: 0 };
}

/** A stable name for one intake, as logs and rule comments show it: `vxlan udp/8472`, `ipip proto/4`, `vxlan udp/8472 over IPv6`. */
export function intakeLabel(i: Intake): string {
  const base = i.port !== undefined ? `${i.kind} udp/${i.port}` : `${i.kind} proto/4`;
  return intakeFamily(i) === 6 ? `${base} over IPv6` : base;
}
