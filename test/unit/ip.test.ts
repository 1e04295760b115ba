import { expect } from 'chai';
import { IP, IPNet, InvalidAddressError, type Family } from '../../lib/ip';

/** Runs `fn`, expecting it to throw an InvalidAddressError; returns the error. */
function invalid(fn: () => unknown): InvalidAddressError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(InvalidAddressError);
    return err as InvalidAddressError;
  }
  throw new Error('expected an InvalidAddressError, but nothing was thrown');
}

describe('IP', () => {
  describe('parse and format', () => {
    const cases: { text: string; family: Family; formatted: string; why: string }[] = [
      { text: '10.244.1.0', family: 4, formatted: '10.244.1.0', why: 'an IPv4 address as written' },
      { text: '0.0.0.0', family: 4, formatted: '0.0.0.0', why: 'the IPv4 unspecified address' },
      { text: '255.255.255.255', family: 4, formatted: '255.255.255.255', why: 'the highest IPv4 address' },
      { text: 'fc00:0:0:1:0:0:0:0', family: 6, formatted: 'fc00:0:0:1::', why: 'IPv6 with the trailing zero run compressed' },
      { text: 'FC00::1', family: 6, formatted: 'fc00::1', why: 'IPv6 in lower case' },
      { text: '2001:0db8::0001', family: 6, formatted: '2001:db8::1', why: 'IPv6 without leading zeros in a group' },
      { text: '1:0:0:2:0:0:3:4', family: 6, formatted: '1::2:0:0:3:4', why: 'IPv6 with the first of two equal zero runs compressed' },
      { text: '1:0:0:2:0:0:0:4', family: 6, formatted: '1:0:0:2::4', why: 'IPv6 with the longest zero run compressed' },
      { text: '1:2:3:4:5:6:7::', family: 6, formatted: '1:2:3:4:5:6:7:0', why: 'IPv6 with a lone zero group left uncompressed' },
      { text: '::', family: 6, formatted: '::', why: 'the IPv6 unspecified address' },
      { text: '::1', family: 6, formatted: '::1', why: 'the IPv6 loopback' },
      { text: '::ffff:192.0.2.1', family: 6, formatted: '::ffff:192.0.2.1', why: 'an IPv4-mapped address in mixed form' },
    ];
    for (const c of cases) {
      it(`reads ${JSON.stringify(c.text)} and prints ${c.why}`, () => {
        const ip = IP.parse(c.text);
        expect(ip.family).to.equal(c.family);
        expect(ip.toString()).to.equal(c.formatted);
        expect(IP.parse(ip.toString()).equals(ip)).to.equal(true);
      });
    }

    it('holds the address as an unsigned integer of 32 or 128 bits', () => {
      const v4 = IP.parse('10.0.0.1');
      expect(v4.value).to.equal(0x0a000001n);
      expect(v4.bits).to.equal(32);
      const v6 = IP.parse('fc00::1');
      expect(v6.value).to.equal((0xfc00n << 112n) + 1n);
      expect(v6.bits).to.equal(128);
    });
  });

  describe('refuses text that is not an address', () => {
    const cases: { text: string; want?: Family; why: string }[] = [
      { text: '', why: 'the empty string' },
      { text: '1.2.3', why: 'an IPv4 address with three octets' },
      { text: '1.2.3.4.5', why: 'an IPv4 address with five octets' },
      { text: '256.1.1.1', why: 'an octet above 255' },
      { text: '010.0.0.1', why: 'an octet with a leading zero (octal to some parsers)' },
      { text: ' 1.2.3.4', why: 'surrounding white space' },
      { text: '1.2.3.4/32', why: 'a CIDR network' },
      { text: 'fe80::1%eth0', why: 'an IPv6 address with a zone' },
      { text: '1::2::3', why: 'two "::" in one address' },
      { text: 'fc00::g', why: 'a group that is not hexadecimal' },
      { text: '[::1]', why: 'an address in brackets' },
      { text: '1.2.3.4', want: 6, why: 'an IPv4 address where IPv6 is wanted' },
      { text: '::1', want: 4, why: 'an IPv6 address where IPv4 is wanted' },
    ];
    for (const c of cases) {
      it(`refuses ${c.why}, naming the text`, () => {
        const err = invalid(() => IP.parse(c.text, c.want));
        expect(err.text).to.equal(c.text);
        expect(err.message).to.include(JSON.stringify(c.text));
      });
    }
  });

  it('adds to an address and compares addresses by family and value', () => {
    const ip = IP.parse('10.0.0.255');
    expect(ip.add(1).toString()).to.equal('10.0.1.0');
    expect(ip.add(1n).equals(IP.parse('10.0.1.0'))).to.equal(true);
    expect(IP.parse('::a').equals(IP.fromValue(4, 10n))).to.equal(false);
  });

  it('refuses a value outside the family with a RangeError', () => {
    expect(() => IP.fromValue(4, 1n << 32n)).to.throw(RangeError);
    expect(() => IP.fromValue(6, -1n)).to.throw(RangeError);
    expect(() => IP.parse('255.255.255.255').add(1)).to.throw(RangeError);
  });
});

describe('IPNet', () => {
  describe('parse and format', () => {
    const cases: { text: string; family: Family; prefixLen: number; size: bigint; last: string }[] = [
      { text: '10.244.0.0/16', family: 4, prefixLen: 16, size: 65536n, last: '10.244.255.255' },
      { text: '10.0.0.1/32', family: 4, prefixLen: 32, size: 1n, last: '10.0.0.1' },
      { text: '0.0.0.0/0', family: 4, prefixLen: 0, size: 1n << 32n, last: '255.255.255.255' },
      { text: 'fc00::/48', family: 6, prefixLen: 48, size: 1n << 80n, last: 'fc00::ffff:ffff:ffff:ffff:ffff' },
      { text: 'fc00:0:0:1::/64', family: 6, prefixLen: 64, size: 1n << 64n, last: 'fc00::1:ffff:ffff:ffff:ffff' },
    ];
    for (const c of cases) {
      it(`reads ${c.text} with its size and last address`, () => {
        const net = IPNet.parse(c.text);
        expect(net.toString()).to.equal(c.text);
        expect(net.family).to.equal(c.family);
        expect(net.prefixLen).to.equal(c.prefixLen);
        expect(net.size).to.equal(c.size);
        expect(net.last.toString()).to.equal(c.last);
      });
    }

    it('prints an IPv6 network in canonical form', () => {
      expect(IPNet.parse('FC00:0000:0000:0001:0000:0000:0000:0000/64').toString()).to.equal('fc00:0:0:1::/64');
    });

    it('clears host bits when asked to', () => {
      expect(IPNet.parse('10.244.1.7/16', { allowHostBits: true }).toString()).to.equal('10.244.0.0/16');
      expect(IPNet.of(IP.parse('10.244.1.7'), 24).toString()).to.equal('10.244.1.0/24');
    });
  });

  describe('refuses text that is not a network', () => {
    const cases: { text: string; want?: Family; why: string; says?: string }[] = [
      { text: '10.0.0.0', why: 'an address without a prefix length', says: 'no /prefix length' },
      { text: '10.0.0.0/', why: 'an empty prefix length', says: 'bad prefix length' },
      { text: '10.0.0.0/33', why: 'an IPv4 prefix length above 32', says: 'bad prefix length' },
      { text: '10.0.0.0/-1', why: 'a negative prefix length', says: 'bad prefix length' },
      { text: '10.0.0.0/x', why: 'a prefix length that is not a number', says: 'bad prefix length' },
      { text: 'fc00::/129', why: 'an IPv6 prefix length above 128', says: 'bad prefix length' },
      { text: '10.0.0/8', why: 'a malformed address' },
      { text: '10.244.1.0/16', why: 'an IPv4 network with host bits set', says: 'did you mean 10.244.0.0/16?' },
      { text: 'fc00::1/64', why: 'an IPv6 network with host bits set', says: 'did you mean fc00::/64?' },
      { text: 'fc00::/48', want: 4, why: 'an IPv6 network where IPv4 is wanted', says: 'IPv4 network' },
      { text: '10.0.0.0/8', want: 6, why: 'an IPv4 network where IPv6 is wanted', says: 'IPv6 network' },
    ];
    for (const c of cases) {
      it(`refuses ${c.why}, naming the text`, () => {
        const err = invalid(() => IPNet.parse(c.text, { want: c.want }));
        expect(err.text).to.equal(c.text);
        expect(err.message).to.include(JSON.stringify(c.text));
        if (c.says) expect(err.message).to.include(c.says);
      });
    }
  });

  describe('contains, covers and overlaps', () => {
    const net = IPNet.parse('10.244.0.0/16');

    it('contains its first and last address and nothing outside', () => {
      expect(net.contains(IP.parse('10.244.0.0'))).to.equal(true);
      expect(net.contains(IP.parse('10.244.255.255'))).to.equal(true);
      expect(net.contains(IP.parse('10.245.0.0'))).to.equal(false);
      expect(net.contains(IP.parse('10.243.255.255'))).to.equal(false);
    });

    it('never contains an address of the other family', () => {
      expect(IPNet.parse('::/0').contains(IP.parse('10.0.0.1'))).to.equal(false);
      expect(IPNet.parse('0.0.0.0/0').contains(IP.parse('::1'))).to.equal(false);
    });

    it('covers the networks wholly inside it, itself included', () => {
      expect(net.covers(IPNet.parse('10.244.3.0/24'))).to.equal(true);
      expect(net.covers(net)).to.equal(true);
      expect(net.covers(IPNet.parse('10.0.0.0/8'))).to.equal(false);
      expect(net.covers(IPNet.parse('10.245.0.0/24'))).to.equal(false);
      expect(IPNet.parse('::/0').covers(IPNet.parse('10.0.0.0/8'))).to.equal(false);
    });

    it('overlaps a network either way round, and not a disjoint one', () => {
      const inner = IPNet.parse('10.244.3.0/24');
      expect(net.overlaps(inner)).to.equal(true);
      expect(inner.overlaps(net)).to.equal(true);
      expect(net.overlaps(IPNet.parse('10.245.0.0/16'))).to.equal(false);
      expect(IPNet.parse('fc00::/48').overlaps(IPNet.parse('fc00:0:1::/48'))).to.equal(false);
    });

    it('equals a network of the same address and length only', () => {
      expect(net.equals(IPNet.parse('10.244.0.0/16'))).to.equal(true);
      expect(net.equals(IPNet.parse('10.244.0.0/17'))).to.equal(false);
    });
  });

  describe('step', () => {
    const cases: { from: string; n: number; to: string }[] = [
      { from: '10.244.0.0/24', n: 1, to: '10.244.1.0/24' },
      { from: '10.244.0.0/24', n: 255, to: '10.244.255.0/24' },
      { from: '10.244.5.0/24', n: -1, to: '10.244.4.0/24' },
      { from: '10.0.0.0/26', n: 3, to: '10.0.0.192/26' },
      { from: 'fc00::/64', n: 1, to: 'fc00:0:0:1::/64' },
      { from: 'fc00::/64', n: 0xffff, to: 'fc00:0:0:ffff::/64' },
    ];
    for (const c of cases) {
      it(`moves ${c.from} by ${c.n} to ${c.to}`, () => {
        expect(IPNet.parse(c.from).step(c.n).toString()).to.equal(c.to);
      });
    }

    it('refuses to step past the end of the address space', () => {
      expect(() => IPNet.parse('255.255.255.0/24').step(1)).to.throw(RangeError);
    });
  });
});

describe('IPv4 text without ip-address: the same answers as ip-address', () => {
  // lib/ip parses and prints IPv4 itself (it is on every reconcile's path); ip-address stays the reference.
  const { Address4 } = require('ip-address') as typeof import('ip-address');
  const reference = (text: string): bigint | 'invalid' =>
    Address4.isValid(text) && /^\d{1,3}(\.\d{1,3}){3}$/.test(text) ? new Address4(text).bigInt() : 'invalid';
  const ours = (text: string): bigint | 'invalid' => {
    try {
      return IP.parse(text, 4).value;
    } catch {
      return 'invalid';
    }
  };

  it('parses and prints every octet value, and the extremes, as ip-address does', () => {
    const samples = ['0.0.0.0', '255.255.255.255', '10.244.0.1', '198.18.0.254', '127.0.0.1', '1.2.3.4'];
    for (let o = 0; o < 256; o++) samples.push(`${o}.${255 - o}.${o}.${(o * 7) % 256}`);
    for (const text of samples) {
      expect(ours(text), text).to.equal(reference(text));
      expect(IP.parse(text).toString(), text).to.equal(Address4.fromBigInt(reference(text) as bigint).correctForm());
    }
  });

  it('refuses what ip-address refuses: leading zeros, octets over 255, too few or many parts, signs, spaces', () => {
    for (const text of ['010.0.0.1', '00.0.0.0', '1.2.3.04', '256.0.0.0', '1.2.3.999', '1.2.3', '1.2.3.4.5', '+1.2.3.4', ' 1.2.3.4', '1.2.3.4 ', '1..2.3', '1.2.3.4.', '0x1.2.3.4', '1.2.3.-1', '']) {
      expect(ours(text), JSON.stringify(text)).to.equal('invalid');
      expect(reference(text), JSON.stringify(text)).to.equal('invalid');
    }
  });

  it('prints an IPv4-mapped IPv6 address in its mixed form', () => {
    expect(IP.parse('::ffff:198.18.0.1').toString()).to.equal('::ffff:198.18.0.1');
    const printed = IP.parse('10.244.1.1');
    printed.toString();
    expect(printed).to.deep.equal(IP.parse('10.244.1.1'));
  });
});
