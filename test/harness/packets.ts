/**
 * Raw IPv4 views of captured frames, for byte-level assertions on wire
 * formats; and crafted packets sent the way a peer's datapath (or a rogue
 * host) would.
 */
import type { CapturedFrame } from './capture';
import { IP } from '../../lib/ip';
import { execIn } from './netns';

const ETH_LEN = 14;

/** The IPv4 packet of a captured frame, starting `offset` bytes after the Ethernet header. */
export function ipAt(frame: CapturedFrame, offset = 0): Buffer {
  return frame.raw.subarray(ETH_LEN + offset);
}

export function ipHeaderLength(pkt: Buffer): number {
  return (pkt[0] & 0x0f) * 4;
}

export function ipChecksumValid(pkt: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < ipHeaderLength(pkt); i += 2) sum += pkt.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum === 0xffff;
}

/** The packet with TTL and header checksum zeroed: what must not change between pod and wire. */
export function withoutTtl(pkt: Buffer): Buffer {
  const copy = Buffer.from(pkt.subarray(0, pkt.readUInt16BE(2)));
  copy[8] = 0;
  copy.writeUInt16BE(0, 10);
  return copy;
}

export function checksum(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** A TCP/IPv4 ACK segment to port 9 with `payload` bytes of data, DF set, both checksums valid. */
export function tcpPacket(src: string, dst: string, payload: number): Buffer {
  const pkt = Buffer.alloc(40 + payload);
  const addr = (text: string, at: number) => text.split('.').forEach((b, i) => (pkt[at + i] = Number(b)));
  pkt[0] = 0x45;
  pkt.writeUInt16BE(pkt.length, 2);
  pkt.writeUInt16BE(0x1234, 4);
  pkt.writeUInt16BE(0x4000, 6);
  pkt[8] = 64;
  pkt[9] = 6;
  addr(src, 12);
  addr(dst, 16);
  pkt.writeUInt16BE(checksum(pkt.subarray(0, 20)), 10);
  pkt.writeUInt16BE(40000, 20);
  pkt.writeUInt16BE(9, 22);
  pkt.writeUInt32BE(1, 24);
  pkt.writeUInt32BE(1, 28);
  pkt[32] = 5 << 4;
  pkt[33] = 0x10;
  pkt.writeUInt16BE(65535, 34);
  for (let i = 0; i < payload; i++) pkt[40 + i] = i & 0xff;
  const pseudo = Buffer.alloc(12);
  pkt.copy(pseudo, 0, 12, 20);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(20 + payload, 10);
  pkt.writeUInt16BE(checksum(pkt.subarray(20), 0xffff & ~checksum(pseudo)), 36);
  return pkt;
}

/** A UDP/IPv6 datagram to `dport` with `payload` bytes of data, its checksum valid (IPv6 requires one). */
export function udp6Packet(src: string, dst: string, dport: number, payload: number): Buffer {
  const pkt = Buffer.alloc(48 + payload);
  const addr = (text: string, at: number) => {
    const v = IP.parse(text, 6).value;
    for (let i = 0; i < 16; i++) pkt[at + i] = Number((v >> BigInt(8 * (15 - i))) & 0xffn);
  };
  pkt.writeUInt32BE(0x60000000, 0);
  pkt.writeUInt16BE(8 + payload, 4);
  pkt[6] = 17;
  pkt[7] = 64;
  addr(src, 8);
  addr(dst, 24);
  pkt.writeUInt16BE(40000, 40);
  pkt.writeUInt16BE(dport, 42);
  pkt.writeUInt16BE(8 + payload, 44);
  for (let i = 0; i < payload; i++) pkt[48 + i] = i & 0xff;
  // Pseudo-header: source, destination, upper-layer length, next header.
  const pseudo = Buffer.alloc(40);
  pkt.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(8 + payload, 32);
  pseudo[39] = 17;
  const sum = checksum(Buffer.concat([pseudo, pkt.subarray(40)]));
  pkt.writeUInt16BE(sum === 0 ? 0xffff : sum, 46);
  return pkt;
}

/** Sends `payload` as one UDP datagram from namespace `ns` to `dst`:`port` (node's dgram; IPv6 when `dst` is). */
export async function sendUdp(ns: string, dst: string, port: number, payload: Buffer): Promise<void> {
  await execIn(ns, [process.execPath, '-e',
    `const s=require('dgram').createSocket('${dst.includes(':') ? 'udp6' : 'udp4'}');s.send(Buffer.from(process.argv[1],'hex'),Number(process.argv[2]),process.argv[3],(e)=>{s.close();if(e)throw e})`,
    payload.toString('hex'), String(port), dst]);
}

/** Sends `inner` as a raw IP-in-IP packet (IP protocol 4) from namespace `ns` to `dst` (python3: node has no raw sockets). */
export async function sendIpip(ns: string, dst: string, inner: Buffer): Promise<void> {
  await execIn(ns, ['python3', '-c', 'import socket,sys;socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_IPIP).sendto(bytes.fromhex(sys.argv[1]),(sys.argv[2],0))', inner.toString('hex'), dst]);
}

/** A VXLAN payload (header with VNI `vni`, inner Ethernet `srcMac` → `dstMac`, IPv4 or IPv6 as `inner` is) carrying `inner`. */
export function vxlanPayload(vni: number, dstMac: string, srcMac: string, inner: Buffer): Buffer {
  const head = Buffer.alloc(8 + 14);
  head[0] = 0x08;
  head.writeUIntBE(vni, 4, 3);
  Buffer.from(dstMac.replace(/:/g, ''), 'hex').copy(head, 8);
  Buffer.from(srcMac.replace(/:/g, ''), 'hex').copy(head, 14);
  head.writeUInt16BE(inner[0] >> 4 === 6 ? 0x86dd : 0x0800, 20);
  return Buffer.concat([head, inner]);
}
