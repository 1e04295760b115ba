import { expect } from 'chai';
import { parseNetworkConfig, type NetworkConfig } from '../../lib/config';
import { IPNet } from '../../lib/ip';
import {
  CANDIDATE_WINDOW,
  OutOfSubnetsError,
  allocationRange,
  describeRange,
  freeSubnets,
  pickSubnet,
  wantedSubnet,
  type AllocationRange,
} from '../../lib/subnet/allocator';
import { formatSubnetKey, type SubnetKey } from '../../lib/subnet/lease-codec';

const KNOWN = ['alloc', 'host-gw', 'ipip', 'udp', 'vxlan'];

function config(json: object): NetworkConfig {
  return parseNetworkConfig(JSON.stringify(json), KNOWN);
}

function rangeOf(json: object): AllocationRange {
  return allocationRange(config(json));
}

/** A key as text: `10.244.1.0/24` or `10.244.1.0/24 fc00:0:0:1::/64`. */
function show(key: SubnetKey): string {
  return key.ipv6Subnet ? `${key.subnet.toString()} ${key.ipv6Subnet.toString()}` : key.subnet.toString();
}

/** `10.244.<from>.0/24` .. `10.244.<to>.0/24`. */
function v4s(from: number, to: number): string[] {
  const out: string[] = [];
  for (let i = from; i <= to; i++) out.push(`10.244.${i}.0/24`);
  return out;
}

/** Runs `fn`, expecting an OutOfSubnetsError; returns it. */
function outOfSubnets(fn: () => unknown): OutOfSubnetsError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(OutOfSubnetsError);
    return err as OutOfSubnetsError;
  }
  throw new Error('expected an OutOfSubnetsError, but nothing was thrown');
}

/**
 * A seeded random source in [0, 1): a 32-bit linear congruential generator
 * (Numerical Recipes constants), so that every run sees the same sequence.
 */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const VXLAN_16 = { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } };
/** flanneld's second fixture config. */
const FIXTURE_8 = { Network: '10.0.0.0/8', SubnetLen: 24, SubnetMin: '10.1.0.0', SubnetMax: '10.1.255.0', Backend: { Type: 'vxlan' } };
const DUAL = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'vxlan' } };

describe('subnet allocator', () => {
  describe('allocationRange', () => {
    const cases: { name: string; config: object; expected: Record<string, string | undefined> }[] = [
      {
        name: 'runs from the second subnet to the last one by default',
        config: VXLAN_16,
        expected: { first: '10.244.1.0/24', last: '10.244.255.0/24', firstV6: undefined, lastV6: undefined },
      },
      {
        name: 'runs from SubnetMin to SubnetMax when they are given',
        config: FIXTURE_8,
        expected: { first: '10.1.0.0/24', last: '10.1.255.0/24', firstV6: undefined, lastV6: undefined },
      },
      {
        name: 'uses SubnetLen for the subnets',
        config: { Network: '10.20.0.0/20', SubnetLen: 26 },
        expected: { first: '10.20.0.64/26', last: '10.20.15.192/26', firstV6: undefined, lastV6: undefined },
      },
      {
        name: 'adds the IPv6 range in dual stack',
        config: DUAL,
        expected: { first: '10.244.1.0/24', last: '10.244.255.0/24', firstV6: 'fc00:0:0:1::/64', lastV6: 'fc00:0:0:ffff::/64' },
      },
      {
        name: 'leaves the IPv6 range out while EnableIPv6 is false',
        config: { ...DUAL, EnableIPv6: false },
        expected: { first: '10.244.1.0/24', last: '10.244.255.0/24', firstV6: undefined, lastV6: undefined },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const r = rangeOf(c.config);
        expect({
          first: r.first?.toString(),
          last: r.last?.toString(),
          firstV6: r.firstV6?.toString(),
          lastV6: r.lastV6?.toString(),
        }).to.deep.equal(c.expected);
      });
    }

    it('allocates IPv6 subnets alone in an IPv6-only network', () => {
      const v6only = allocationRange(config({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48' }));
      expect(v6only.first).to.equal(undefined);
      expect(v6only.firstV6?.toString()).to.equal('fc00:0:0:1::/64');
      expect(describeRange(v6only)).to.equal('fc00:0:0:1::/64 .. fc00:0:0:ffff::/64');
    });

    it('describes a range by its first and last subnets', () => {
      expect(describeRange(rangeOf(VXLAN_16))).to.equal('10.244.1.0/24 .. 10.244.255.0/24');
      expect(describeRange(rangeOf(DUAL))).to.equal('10.244.1.0/24 .. 10.244.255.0/24 and fc00:0:0:1::/64 .. fc00:0:0:ffff::/64');
    });
  });

  describe('freeSubnets', () => {
    it(`lists the first ${CANDIDATE_WINDOW} subnets in order when none is taken`, () => {
      const free = freeSubnets(rangeOf(VXLAN_16), new Set());
      expect(free.map(show)).to.deep.equal(v4s(1, 100));
    });

    it('skips taken subnets and still lists 100', () => {
      const taken = new Set(['10.244.1.0/24', '10.244.3.0/24', '10.244.50.0/24']);
      const free = freeSubnets(rangeOf(VXLAN_16), taken);
      const expected = v4s(1, 103).filter((s) => !taken.has(s));
      expect(expected).to.have.length(100);
      expect(free.map(show)).to.deep.equal(expected);
    });

    it('ignores taken entries that are not subnets of the range', () => {
      const taken = new Set(['10.243.1.0/24', '10.244.1.1/24', 'garbage', 'fc00:0:0:1::/64']);
      expect(freeSubnets(rangeOf(VXLAN_16), taken).map(show)).to.deep.equal(v4s(1, 100));
    });

    it('treats a taken subnet of another length as occupying every subnet it overlaps, as flanneld does', () => {
      expect(freeSubnets(rangeOf(VXLAN_16), new Set(['10.244.1.0/25'])).map(show)).to.deep.equal(v4s(2, 101));
    });

    it('stops at SubnetMax, listing fewer than 100 when the range is short', () => {
      const range = rangeOf({ ...FIXTURE_8, SubnetMin: '10.1.250.0' });
      const free = freeSubnets(range, new Set(['10.1.252.0/24']));
      expect(free.map(show)).to.deep.equal(['10.1.250.0/24', '10.1.251.0/24', '10.1.253.0/24', '10.1.254.0/24', '10.1.255.0/24']);
    });

    it('never lists a subnet below SubnetMin or above SubnetMax', () => {
      const range = rangeOf({ ...FIXTURE_8, SubnetMin: '10.1.10.0', SubnetMax: '10.1.19.0' });
      const free = freeSubnets(range, new Set()).map(show);
      expect(free).to.deep.equal(Array.from({ length: 10 }, (_, i) => `10.1.${10 + i}.0/24`));
    });

    it('honours a smaller limit', () => {
      expect(freeSubnets(rangeOf(VXLAN_16), new Set(['10.244.2.0/24']), 3).map(show)).to.deep.equal(['10.244.1.0/24', '10.244.3.0/24', '10.244.4.0/24']);
    });

    it('stops at the top of the address space without overflowing', () => {
      const range = rangeOf({ Network: '255.255.0.0/16', SubnetMin: '255.255.253.0' });
      expect(freeSubnets(range, new Set()).map(show)).to.deep.equal(['255.255.253.0/24', '255.255.254.0/24', '255.255.255.0/24']);
    });

    it('returns nothing when every subnet is taken', () => {
      const range = rangeOf({ Network: '10.10.0.0/28' });
      expect(freeSubnets(range, new Set(['10.10.0.4/30', '10.10.0.8/30', '10.10.0.12/30']))).to.deep.equal([]);
    });

    describe('in dual stack', () => {
      it('pairs the n-th IPv4 subnet with the n-th IPv6 subnet', () => {
        const free = freeSubnets(rangeOf(DUAL), new Set(), 3);
        expect(free.map(show)).to.deep.equal([
          '10.244.1.0/24 fc00:0:0:1::/64',
          '10.244.2.0/24 fc00:0:0:2::/64',
          '10.244.3.0/24 fc00:0:0:3::/64',
        ]);
      });

      it('skips a pair when either half is taken', () => {
        const free = freeSubnets(rangeOf(DUAL), new Set(['10.244.1.0/24', 'fc00:0:0:2::/64']), 2);
        expect(free.map(show)).to.deep.equal(['10.244.3.0/24 fc00:0:0:3::/64', '10.244.4.0/24 fc00:0:0:4::/64']);
      });

      it('stops when the shorter of the two ranges ends', () => {
        const range = rangeOf({ ...DUAL, IPv6Network: 'fc00::/62' });
        expect(free(range)).to.deep.equal(['10.244.1.0/24 fc00:0:0:1::/64', '10.244.2.0/24 fc00:0:0:2::/64', '10.244.3.0/24 fc00:0:0:3::/64']);
        const shortV4 = rangeOf({ ...DUAL, SubnetMax: '10.244.2.0' });
        expect(free(shortV4)).to.deep.equal(['10.244.1.0/24 fc00:0:0:1::/64', '10.244.2.0/24 fc00:0:0:2::/64']);

        function free(r: AllocationRange): string[] {
          return freeSubnets(r, new Set()).map(show);
        }
      });
    });
  });

  describe('in an IPv6-only network', () => {
    const V6ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } };

    it("walks the IPv6 subnets alone, each keyed with flanneld's empty IPv4 part 0.0.0.0-0", () => {
      const free = freeSubnets(rangeOf(V6ONLY), new Set(), 2);
      expect(free.map(show)).to.deep.equal(['0.0.0.0/0 fd00:10:244:1::/64', '0.0.0.0/0 fd00:10:244:2::/64']);
      expect(free.map(formatSubnetKey)).to.deep.equal(['0.0.0.0-0&fd00:10:244:1::-64', '0.0.0.0-0&fd00:10:244:2::-64']);
    });

    it('skips taken IPv6 subnets, whatever IPv4 subnets are taken', () => {
      const free = freeSubnets(rangeOf(V6ONLY), new Set(['fd00:10:244:1::/64', '10.244.2.0/24']), 1);
      expect(free.map(show)).to.deep.equal(['0.0.0.0/0 fd00:10:244:2::/64']);
    });

    it('runs out when every IPv6 subnet is taken', () => {
      const range = rangeOf({ ...V6ONLY, IPv6Network: 'fd00:10:244::/62' });
      const taken = new Set(['fd00:10:244:1::/64', 'fd00:10:244:2::/64', 'fd00:10:244:3::/64']);
      expect(() => pickSubnet(range, taken)).to.throw(OutOfSubnetsError, /fd00:10:244:1::\/64 \.\. fd00:10:244:3::\/64/);
    });

    it('takes the previous IPv6 subnet back when it is free, and not when it is taken', () => {
      const range = rangeOf(V6ONLY);
      const wanted = { ipv6Subnet: IPNet.parse('fd00:10:244:7::/64') };
      expect(formatSubnetKey(wantedSubnet(range, new Set(), wanted)!)).to.equal('0.0.0.0-0&fd00:10:244:7::-64');
      expect(wantedSubnet(range, new Set(['fd00:10:244:7::/64']), wanted)).to.equal(undefined);
    });
  });

  describe('pickSubnet', () => {
    const window: { random: number; expected: string }[] = [
      { random: 0, expected: '10.244.1.0/24' },
      { random: 0.5, expected: '10.244.51.0/24' },
      { random: 0.999999, expected: '10.244.100.0/24' },
    ];
    for (const c of window) {
      it(`picks ${c.expected} of the first 100 free when the random source gives ${c.random}`, () => {
        let calls = 0;
        const random = () => {
          calls++;
          return c.random;
        };
        expect(show(pickSubnet(rangeOf(VXLAN_16), new Set(), random))).to.equal(c.expected);
        expect(calls).to.equal(1);
      });
    }

    it('counts the window over free subnets, not over all of them', () => {
      const taken = new Set(v4s(1, 10));
      expect(show(pickSubnet(rangeOf(VXLAN_16), taken, () => 0))).to.equal('10.244.11.0/24');
      expect(show(pickSubnet(rangeOf(VXLAN_16), taken, () => 0.999999))).to.equal('10.244.110.0/24');
    });

    it('picks within SubnetMin..SubnetMax of a parsed config', () => {
      const range = rangeOf(FIXTURE_8);
      expect(show(pickSubnet(range, new Set(), () => 0))).to.equal('10.1.0.0/24');
      expect(show(pickSubnet(range, new Set(), () => 0.999999))).to.equal('10.1.99.0/24');
    });

    it('picks a pair in dual stack', () => {
      const picked = pickSubnet(rangeOf(DUAL), new Set(['10.244.1.0/24']), () => 0);
      expect(show(picked)).to.equal('10.244.2.0/24 fc00:0:0:2::/64');
    });

    it('picks the one subnet left', () => {
      const range = rangeOf({ Network: '10.10.0.0/28' });
      const picked = pickSubnet(range, new Set(['10.10.0.4/30', '10.10.0.12/30']), () => 0.7);
      expect(show(picked)).to.equal('10.10.0.8/30');
    });

    it('throws OutOfSubnetsError naming the range when every subnet is taken', () => {
      const range = rangeOf({ Network: '10.10.0.0/28' });
      const err = outOfSubnets(() => pickSubnet(range, new Set(['10.10.0.4/30', '10.10.0.8/30', '10.10.0.12/30']), () => 0));
      expect(err.range).to.equal('10.10.0.4/30 .. 10.10.0.12/30');
      expect(err.message).to.include('10.10.0.4/30 .. 10.10.0.12/30');
      expect(err.message).to.match(/SubnetMin\/SubnetMax/);
    });

    it('throws OutOfSubnetsError naming both ranges in dual stack', () => {
      const range = rangeOf({ ...DUAL, SubnetMax: '10.244.2.0' });
      const err = outOfSubnets(() => pickSubnet(range, new Set(['10.244.1.0/24', 'fc00:0:0:2::/64'])));
      expect(err.message).to.include('10.244.1.0/24 .. 10.244.2.0/24 and fc00:0:0:1::/64 .. fc00:0:0:ffff::/64');
    });

    describe('over a few hundred random taken sets', () => {
      const configs: { name: string; config: object }[] = [
        { name: 'a /16 of /24s', config: VXLAN_16 },
        { name: 'a /20 of /26s between SubnetMin and SubnetMax', config: { Network: '10.20.0.0/20', SubnetLen: 26, SubnetMin: '10.20.2.0', SubnetMax: '10.20.9.192' } },
        { name: 'a /28 of /30s', config: { Network: '10.10.0.0/28' } },
        { name: 'a dual-stack /22 of /25s', config: { ...DUAL, Network: '10.30.0.0/22', SubnetLen: 25, IPv6Network: 'fc00:0:0:100::/56' } },
      ];
      for (const c of configs) {
        it(`never picks a taken, misaligned or out-of-range subnet (${c.name})`, () => {
          const cfg = config(c.config);
          const range = allocationRange(cfg);
          const all = enumerate(range);
          const random = lcg(0x7a11 + all.length);
          let exhausted = 0;
          for (let round = 0; round < 300; round++) {
            // Each subnet is taken with a probability drawn for this round, from none to all of them.
            const density = round % 10 === 9 ? 1 : random();
            const taken = new Set<string>();
            for (const key of all) {
              if (random() < density) taken.add(random() < 0.5 || !key.ipv6Subnet ? key.subnet.toString() : key.ipv6Subnet.toString());
            }
            const expectedFree = all.filter((k) => !isTaken(k, taken)).slice(0, CANDIDATE_WINDOW);
            const draw = random();
            if (expectedFree.length === 0) {
              outOfSubnets(() => pickSubnet(range, taken, () => draw));
              exhausted++;
              continue;
            }
            const picked = pickSubnet(range, taken, () => draw);
            expect(isTaken(picked, taken), `round ${round}: ${show(picked)} is taken`).to.equal(false);
            checkInside(picked.subnet, range.first!, range.last!, cfg.subnetLen, cfg.network);
            expect(picked.ipv6Subnet === undefined).to.equal(range.firstV6 === undefined);
            if (picked.ipv6Subnet && range.firstV6 && range.lastV6) {
              checkInside(picked.ipv6Subnet, range.firstV6, range.lastV6, cfg.ipv6SubnetLen, cfg.ipv6Network);
            }
            expect(show(picked), `round ${round}`).to.equal(show(expectedFree[Math.floor(draw * expectedFree.length)]));
          }
          expect(exhausted, 'some rounds take every subnet').to.be.greaterThan(0);
        });
      }

      /** Every subnet (pair) of the range, the slow way: a reference to check freeSubnets against. */
      function enumerate(range: AllocationRange): SubnetKey[] {
        const out: SubnetKey[] = [];
        for (let i = 0n; ; i++) {
          const subnet = IPNet.of(range.first!.ip.add(i * range.first!.size), range.first!.prefixLen);
          if (subnet.ip.value > range.last!.ip.value) break;
          if (!range.firstV6 || !range.lastV6) {
            out.push({ subnet });
            continue;
          }
          const ipv6Subnet = IPNet.of(range.firstV6.ip.add(i * range.firstV6.size), range.firstV6.prefixLen);
          if (ipv6Subnet.ip.value > range.lastV6.ip.value) break;
          out.push({ subnet, ipv6Subnet });
        }
        return out;
      }

      function isTaken(key: SubnetKey, taken: ReadonlySet<string>): boolean {
        return taken.has(key.subnet.toString()) || (key.ipv6Subnet !== undefined && taken.has(key.ipv6Subnet.toString()));
      }

      function checkInside(subnet: IPNet, first: IPNet, last: IPNet, len: number, network: IPNet | undefined): void {
        expect(subnet.prefixLen, `${subnet.toString()} length`).to.equal(len);
        expect(IPNet.of(subnet.ip, len).ip.equals(subnet.ip), `${subnet.toString()} aligned`).to.equal(true);
        expect(subnet.ip.value >= first.ip.value && subnet.ip.value <= last.ip.value, `${subnet.toString()} in ${first.toString()}..${last.toString()}`).to.equal(true);
        expect(network?.covers(subnet), `${subnet.toString()} inside the network`).to.equal(true);
      }
    });
  });
});
