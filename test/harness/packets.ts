/** Raw IPv4 views of captured frames, for byte-level assertions on wire formats. */
import type { CapturedFrame } from './capture';

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
