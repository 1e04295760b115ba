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

export interface Intake {
  readonly kind: IntakeKind;
  /** UDP destination port; absent for ipip (matched as IP protocol 4). */
  readonly port?: number;
  /** Bytes from the outer transport header to the inner IPv4 header. */
  readonly inner: number;
  /** Where the inner frame's ethertype is (vxlan carries Ethernet): only IPv4 (0x0800) frames are source-checked. */
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

/** VXLAN on `port`: UDP header, VXLAN header, inner Ethernet, then the inner IPv4 header. */
export function vxlanIntake(port: number): Intake {
  return { kind: 'vxlan', port, inner: UDP_HEADER + VXLAN_HEADER + ETHERNET_HEADER, ethertypeAt: UDP_HEADER + VXLAN_HEADER + 12 };
}

/** flanneld's udp on `port`: the inner IPv4 packet is the whole UDP payload; the engine checks its source. */
export function udpIntake(port: number): Intake {
  return { kind: 'udp', port, inner: UDP_HEADER, innerCheckedByEngine: true };
}

/** IP protocol 4 (kernel ipip and the userspace engine's raw socket alike). */
export function ipipIntake(): Intake {
  return { kind: 'ipip', inner: 0 };
}

/** A stable name for one intake, as logs and rule comments show it: `vxlan udp/8472`, `ipip proto/4`. */
export function intakeLabel(i: Intake): string {
  return i.port !== undefined ? `${i.kind} udp/${i.port}` : `${i.kind} proto/4`;
}
