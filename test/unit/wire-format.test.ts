import { expect } from 'chai';
import { decodeIp, decodeMac, ipAt, macAt, readAttributes } from '../../lib/netlink/wire-format';

describe('netlink address decoding', () => {
  it('prints MACs as two lower-case hex digits per byte, colon-separated, for every byte value', () => {
    expect(decodeMac(Buffer.from([0x0e, 0xfa, 0xc6, 0x12, 0x00, 0x01]))).to.equal('0e:fa:c6:12:00:01');
    for (let b = 0; b < 256; b++) {
      const bytes = Buffer.from([b, 255 - b, 0, 0x0f, 0xf0, b]);
      expect(decodeMac(bytes)).to.equal([...bytes].map((x) => x.toString(16).padStart(2, '0')).join(':'));
    }
    expect(decodeMac(Buffer.alloc(0))).to.equal('');
    expect(decodeMac(Buffer.from([7]))).to.equal('07');
  });

  it('prints IPv4 as a dotted quad and IPv6 in RFC 5952 form', () => {
    expect(decodeIp(Buffer.from([198, 18, 0, 1]))).to.equal('198.18.0.1');
    expect(decodeIp(Buffer.from([0, 0, 0, 0]))).to.equal('0.0.0.0');
    expect(decodeIp(Buffer.from([255, 255, 255, 255]))).to.equal('255.255.255.255');
    expect(decodeIp(Buffer.from('fd00010202440007000000000000000a', 'hex'))).to.equal('fd00:102:244:7::a');
    expect(() => decodeIp(Buffer.from([1, 2, 3]))).to.throw(/4 or 16 bytes/);
    for (let b = 0; b < 256; b++) expect(decodeIp(Buffer.from([b, 255 - b, b % 10, 100]))).to.equal(`${b}.${255 - b}.${b % 10}.100`);
  });

  it('reads addresses and MACs in place, at any offset, each call independent of the last', () => {
    const message = Buffer.from([9, 9, 10, 244, 64, 8, 0x02, 0xfa, 0x00, 0x0a, 0xb1, 0x9c, 9]);
    const ip = ipAt(message, 2, 4);
    const mac = macAt(message, 6, 6);
    expect(ipAt(message, 3, 4)).to.equal('244.64.8.2');
    expect([ip, mac]).to.deep.equal(['10.244.64.8', '02:fa:00:0a:b1:9c']);
    expect(() => macAt(Buffer.alloc(40), 0, 33)).to.throw(/at most 32/);
    expect(() => readAttributes(Buffer.alloc(16), 4, 'test', [1, 2, 3, 4, 5, 6, 7, 8, 9]), 'more types than its spans hold').to.throw(/at most 8/);
  });
});
