/** `twill diagnose`'s frame decoding of the IPv6 overlay: VXLAN over IPv6 with an ICMPv6 echo inside, and plain IPv6 (host-gw). */
import { expect } from 'chai';
import { describeFrame, FrameParseError, parseFrame } from '../../lib/diagnose/frame';
import { IP } from '../../lib/ip';

function ethernet(dst: string, src: string, etherType: number): Buffer {
  const b = Buffer.alloc(14);
  Buffer.from(dst.replace(/:/g, ''), 'hex').copy(b, 0);
  Buffer.from(src.replace(/:/g, ''), 'hex').copy(b, 6);
  b.writeUInt16BE(etherType, 12);
  return b;
}

function ipv6(src: string, dst: string, nextHeader: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x60;
  b.writeUInt16BE(payload.length, 4);
  b[6] = nextHeader;
  b[7] = 64;
  const bytes = (a: string) => Buffer.from(IP.parse(a, 6).value.toString(16).padStart(32, '0'), 'hex');
  bytes(src).copy(b, 8);
  bytes(dst).copy(b, 24);
  return Buffer.concat([b, payload]);
}

const echo = (type: number) => Buffer.from([type, 0, 0, 0, 0, 1, 0, 1]);

describe('diagnose frame decoding, IPv6', () => {
  const inner = Buffer.concat([ethernet('1e:01:c6:12:00:02', '1e:01:c6:12:00:01', 0x86dd), ipv6('fd00:10:244:1::2', 'fd00:10:244:2::1', 58, echo(128))]);
  const vxlan = Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 1, 0]), inner]);
  const udp = Buffer.concat([Buffer.from([0x9c, 0x40, 0x21, 0x18, 0, 0, 0, 0]), vxlan]); // 40000 -> 8472
  const frame = Buffer.concat([ethernet('5a:00:00:00:00:02', '5a:00:00:00:00:01', 0x86dd), ipv6('fd00:198:18::1', 'fd00:198:18::2', 17, udp)]);

  it('reads VXLAN over IPv6: the outer IPv6 addresses, the VNI and an ICMPv6 echo request inside, named as ICMPv4\'s', () => {
    const f = parseFrame(frame)!;
    expect(f.outer).to.include({ src: 'fd00:198:18::1', dst: 'fd00:198:18::2', proto: 17 });
    expect(f.encapsulation).to.include({ kind: 'vxlan', vni: 1, dstPort: 8472, innerDstMac: '1e:01:c6:12:00:02' });
    expect(f.packet).to.deep.include({ src: 'fd00:10:244:1::2', dst: 'fd00:10:244:2::1', proto: 58 });
    expect(f.packet!.icmp!.type).to.equal(8);
    expect(describeFrame(f)).to.equal('VXLAN VNI 1 (inner fd00:10:244:1::2 → fd00:10:244:2::1 echo request, inner dst MAC 1e:01:c6:12:00:02), outer fd00:198:18::1 → fd00:198:18::2 UDP port 8472');
  });

  it('reads plain IPv6 (host-gw) with an echo reply, and a cut-short IPv6 header as FrameParseError', () => {
    const plain = Buffer.concat([ethernet('5a:00:00:00:00:01', '5a:00:00:00:00:02', 0x86dd), ipv6('fd00:10:244:2::1', 'fd00:10:244:1::2', 58, echo(129))]);
    const f = parseFrame(plain)!;
    expect(f.encapsulation.kind).to.equal('plain');
    expect(f.packet!.icmp!.type).to.equal(0);
    expect(() => parseFrame(plain.subarray(0, 30))).to.throw(FrameParseError);
  });
});
