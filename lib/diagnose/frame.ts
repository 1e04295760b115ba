/**
 * Decoding what the overlay puts on the wire, from an Ethernet frame down to
 * the packet a pod (or a probe) sent:
 *   VXLAN    Ethernet / IP / UDP <vxlan port> / VXLAN / Ethernet / IP
 *   udp      Ethernet / IPv4 / UDP 8285 / IPv4        (flannel's udp backend)
 *   ipip     Ethernet / IPv4 proto 4 / IPv4
 *   plain    Ethernet / IP                            (host-gw, DirectRouting)
 * where IP is IPv4 or IPv6 (dual stack, IPv6 only; no extension headers).
 * The integration harness (test/harness/capture.ts) decodes its captures
 * with the header helpers exported here, so both read the wire the same way.
 *
 * `parseFrame` returns null for frames that are not IP (ARP) and throws
 * `FrameParseError` for an IP frame cut short.
 */

import { IP } from '../ip';

export interface EthernetHeader {
  readonly srcMac: string;
  readonly dstMac: string;
  readonly etherType: number;
}

/** An IPv4 header, or an IPv6 one (proto: its next header, ttl: its hop limit). */
export interface Ipv4Header {
  readonly src: string;
  readonly dst: string;
  /** 1 ICMP, 4 IPIP, 6 TCP, 17 UDP, 58 ICMPv6. */
  readonly proto: number;
  readonly ttl: number;
}

export interface IcmpHeader {
  /**
   * 8 echo request, 0 echo reply, 3 destination unreachable, 11 time
   * exceeded: ICMPv4's numbers, which ICMPv6's (128, 129, 1, 3) are read as,
   * so that one judgement serves both families.
   */
  readonly type: number;
  readonly code: number;
  /** For errors (3, 11): the destination of the packet the error is about. */
  readonly quotedDst?: string;
}

/** The innermost IPv4 packet: what a pod or the probe sent. */
export interface InnerPacket extends Ipv4Header {
  readonly icmp?: IcmpHeader;
}

export type Encapsulation =
  | { readonly kind: 'vxlan'; readonly vni: number; readonly srcPort: number; readonly dstPort: number; readonly innerSrcMac: string; readonly innerDstMac: string }
  | { readonly kind: 'udp'; readonly srcPort: number; readonly dstPort: number }
  | { readonly kind: 'ipip' }
  | { readonly kind: 'plain' };

export interface ParsedFrame {
  readonly eth: EthernetHeader;
  /** The IPv4 header on the wire (for plain frames, the packet itself). */
  readonly outer: Ipv4Header;
  readonly encapsulation: Encapsulation;
  /** The packet inside the encapsulation (the outer packet itself when plain); absent when the inner frame is not IPv4. */
  readonly packet?: InnerPacket;
}

/** A frame too short for the headers it claims to carry. */
export class FrameParseError extends Error {
  constructor(readonly what: string, readonly offset: number, readonly length: number) {
    super(`frame truncated: ${what} needs bytes up to ${offset}, frame has ${length}`);
    this.name = 'FrameParseError';
  }
}

export interface FramePorts {
  /** UDP destination ports carrying VXLAN (flannel's 8472, IANA's 4789, or Backend.Port). */
  readonly vxlan: readonly number[];
  /** UDP port of flannel's udp backend. */
  readonly udp: number;
}

export const DEFAULT_FRAME_PORTS: FramePorts = { vxlan: [8472, 4789], udp: 8285 };

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const PROTO_ICMP = 1;
const PROTO_ICMPV6 = 58;
const IPV6_LEN = 40;
/** ICMPv6 types as ICMPv4's: echo request, echo reply, destination unreachable, time exceeded. */
const ICMPV6_AS_V4: Readonly<Record<number, number>> = { 128: 8, 129: 0, 1: 3, 3: 11 };
const PROTO_IPIP = 4;
export const PROTO_UDP = 17;
export const ETH_LEN = 14;
export const UDP_LEN = 8;
export const VXLAN_LEN = 8;
const ICMP_LEN = 8;

export function parseFrame(buf: Buffer, ports: FramePorts = DEFAULT_FRAME_PORTS): ParsedFrame | null {
  need(buf, ETH_LEN, 'Ethernet header');
  const eth: EthernetHeader = { dstMac: mac(buf, 0), srcMac: mac(buf, 6), etherType: buf.readUInt16BE(12) };
  if (eth.etherType !== ETHERTYPE_IPV4 && eth.etherType !== ETHERTYPE_IPV6) return null;
  const v6 = eth.etherType === ETHERTYPE_IPV6;
  const { header: outer, payloadOffset: off } = parseIp(buf, ETH_LEN, eth.etherType, v6 ? 'IPv6 header' : 'IPv4 header');
  if (outer.proto === PROTO_UDP) {
    need(buf, off + UDP_LEN, 'UDP header');
    const srcPort = buf.readUInt16BE(off);
    const dstPort = buf.readUInt16BE(off + 2);
    if (ports.vxlan.includes(dstPort)) {
      const v = off + UDP_LEN;
      need(buf, v + VXLAN_LEN + ETH_LEN, 'VXLAN header and inner Ethernet header');
      const e = v + VXLAN_LEN;
      const encapsulation: Encapsulation = {
        kind: 'vxlan', vni: buf.readUIntBE(v + 4, 3), srcPort, dstPort, innerDstMac: mac(buf, e), innerSrcMac: mac(buf, e + 6),
      };
      const innerType = buf.readUInt16BE(e + 12);
      const packet = innerType === ETHERTYPE_IPV4 || innerType === ETHERTYPE_IPV6 ? parsePacket(buf, e + ETH_LEN, innerType, 'inner IP header') : undefined;
      return { eth, outer, encapsulation, packet };
    }
    if (!v6 && (dstPort === ports.udp || srcPort === ports.udp)) {
      return { eth, outer, encapsulation: { kind: 'udp', srcPort, dstPort }, packet: parsePacket(buf, off + UDP_LEN, ETHERTYPE_IPV4, 'inner IPv4 header') };
    }
  }
  if (!v6 && outer.proto === PROTO_IPIP) {
    return { eth, outer, encapsulation: { kind: 'ipip' }, packet: parsePacket(buf, off, ETHERTYPE_IPV4, 'inner IPv4 header') };
  }
  return { eth, outer, encapsulation: { kind: 'plain' }, packet: parsePacket(buf, ETH_LEN, eth.etherType, v6 ? 'IPv6 header' : 'IPv4 header') };
}

function parsePacket(buf: Buffer, off: number, etherType: number, what: string): InnerPacket {
  const { header, payloadOffset } = parseIp(buf, off, etherType, what);
  const v6 = etherType === ETHERTYPE_IPV6;
  if (header.proto !== (v6 ? PROTO_ICMPV6 : PROTO_ICMP)) return header;
  need(buf, payloadOffset + 2, v6 ? 'ICMPv6 header' : 'ICMP header');
  const raw = buf[payloadOffset];
  const type = v6 ? ICMPV6_AS_V4[raw] ?? raw : raw;
  const code = buf[payloadOffset + 1];
  let quotedDst: string | undefined;
  // An ICMP error quotes the header of the packet it is about after its own 8 bytes.
  if (type === 3 || type === 11) {
    if (!v6 && buf.length >= payloadOffset + ICMP_LEN + 20) quotedDst = ipv4(buf, payloadOffset + ICMP_LEN + 16);
    if (v6 && (raw === 1 || raw === 3) && buf.length >= payloadOffset + ICMP_LEN + IPV6_LEN) quotedDst = ipv6(buf, payloadOffset + ICMP_LEN + 24);
  }
  return { ...header, icmp: { type, code, quotedDst } };
}

/** The IPv4 or IPv6 header at `off` (by the Ethernet type that announced it) and where its payload starts. */
function parseIp(buf: Buffer, off: number, etherType: number, what: string): { header: Ipv4Header; payloadOffset: number } {
  if (etherType !== ETHERTYPE_IPV6) return parseIpv4(buf, off, what);
  need(buf, off + IPV6_LEN, what);
  return {
    header: { ttl: buf[off + 7], proto: buf[off + 6], src: ipv6(buf, off + 8), dst: ipv6(buf, off + 24) },
    payloadOffset: off + IPV6_LEN,
  };
}

/** The IPv4 header at `off` and where its payload starts (after any options). */
export function parseIpv4(buf: Buffer, off: number, what: string): { header: Ipv4Header; payloadOffset: number } {
  need(buf, off + 20, what);
  const ihl = (buf[off] & 0x0f) * 4;
  need(buf, off + ihl, what);
  return {
    header: { ttl: buf[off + 8], proto: buf[off + 9], src: ipv4(buf, off + 12), dst: ipv4(buf, off + 16) },
    payloadOffset: off + ihl,
  };
}

/** Throws `FrameParseError` unless `buf` holds bytes up to `end`. */
export function need(buf: Buffer, end: number, what: string): void {
  if (buf.length < end) throw new FrameParseError(what, end, buf.length);
}

/** The MAC address at `off`, as aa:bb:cc:dd:ee:ff. */
export function mac(buf: Buffer, off: number): string {
  return [...buf.subarray(off, off + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The IPv6 address at `off`, in its canonical text (RFC 5952), as `ip` prints it. */
function ipv6(buf: Buffer, off: number): string {
  return IP.fromValue(6, BigInt(`0x${buf.subarray(off, off + 16).toString('hex')}`)).toString();
}

function ipv4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/** One line for an operator: how the frame was encapsulated and between which addresses. */
export function describeFrame(f: ParsedFrame): string {
  const p = f.packet;
  const inner = p ? `${p.src} → ${p.dst}${p.icmp ? ` ${icmpName(p.icmp)}` : ` proto ${p.proto}`}` : 'a non-IP frame';
  const outer = `outer ${f.outer.src} → ${f.outer.dst}`;
  switch (f.encapsulation.kind) {
    case 'vxlan':
      return `VXLAN VNI ${f.encapsulation.vni} (inner ${inner}, inner dst MAC ${f.encapsulation.innerDstMac}), ${outer} UDP port ${f.encapsulation.dstPort}`;
    case 'udp':
      return `UDP ${f.encapsulation.dstPort} (flannel udp; inner ${inner}), ${outer}`;
    case 'ipip':
      return `IP proto 4 (IPIP; inner ${inner}), ${outer}`;
    case 'plain':
      return `plain IP ${inner}, to MAC ${f.eth.dstMac}`;
  }
}

export function icmpName(icmp: IcmpHeader): string {
  switch (icmp.type) {
    case 0: return 'echo reply';
    case 8: return 'echo request';
    case 3: return `destination unreachable (code ${icmp.code})`;
    case 11: return 'time exceeded';
    default: return `ICMP type ${icmp.type}`;
  }
}
