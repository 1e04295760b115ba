/**
 * Properties of the parsers and the allocator, checked with fast-check over
 * generated input rather than chosen examples.
 *
 * The seed is fixed so that every run checks the same cases; on a failure
 * fast-check prints the seed and the shrunk counterexample. Set
 * TWILL_PROPERTY_SEED to explore other cases.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { ConfigError, parseNetworkConfig, type NetworkConfig } from '../../lib/config';
import { IP, IPNet } from '../../lib/ip';
import { KNOWN_BACKEND_TYPES, BackendUnavailableError, backendFactory } from '../../backends';
import type { LeaseAttrs, BackendAdvert } from '../../lib/subnet/lease';
import {
  LeaseFormatError,
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  formatSubnetKey,
  parseSubnetKey,
  type SubnetKey,
} from '../../lib/subnet/lease-codec';
import {
  CANDIDATE_WINDOW,
  OutOfSubnetsError,
  freeSubnets,
  pickSubnet,
  type AllocationRange,
} from '../../lib/subnet/allocator';

const SEED = Number(process.env.TWILL_PROPERTY_SEED ?? 20_240_611);

/** Runs a property with the suite's seed. */
function check<T>(property: fc.IProperty<T>, numRuns = 300): void {
  fc.assert(property, { seed: SEED, numRuns });
}

/** A refusal a user reads: one line, not a page. */
function expectOneShortLine(message: string): void {
  expect(message, 'one line').to.not.match(/[\n\r]/);
  expect(message.length, message.slice(0, 100)).to.be.at.most(300);
}

// ---- shared generators ----

/** `key` with each letter in upper or lower case at random. */
function anyCase(key: string): fc.Arbitrary<string> {
  return fc
    .array(fc.boolean(), { minLength: key.length, maxLength: key.length })
    .map((upper) => [...key].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join(''));
}

/** Re-creates `obj` with its keys (and those of nested objects under `nested`) in a random case. */
function recased(obj: Record<string, unknown>, nested: string[] = []): fc.Arbitrary<Record<string, unknown>> {
  const entries = Object.entries(obj).map(([key, value]) => {
    const v: fc.Arbitrary<unknown> =
      nested.includes(key) && value !== null && typeof value === 'object' ? recased(value as Record<string, unknown>) : fc.constant(value);
    return fc.tuple(anyCase(key), v);
  });
  return fc.tuple(...entries).map((pairs) => Object.fromEntries(pairs));
}

/** JSON values as they come back from JSON.parse (no -0, no prototype tricks). */
const json = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown);

const ipv4Value = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.integer({ min: 0xffffff00, max: 0xffffffff }), // the top of the address space
  fc.integer({ min: 0, max: 255 }),
).map((n) => BigInt(n));
const ipv6Value = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
  fc.bigInt({ min: 0n, max: 0xffffffffn }).map((v) => (0xffffn << 32n) | v), // IPv4-mapped
  fc.bigInt({ min: 0n, max: 0xffffn }),
  fc.bigInt({ min: 0n, max: 0xffffn }).map((v) => (0xfc00n << 112n) | (v << 64n)),
);
const ipv4Text = ipv4Value.map((v) => IP.fromValue(4, v).toString());
const ipv6Text = ipv6Value.map((v) => IP.fromValue(6, v).toString());

const v4Net = fc.tuple(ipv4Value, fc.integer({ min: 0, max: 32 })).map(([v, len]) => IPNet.of(IP.fromValue(4, v), len));
const v6Net = fc.tuple(ipv6Value, fc.integer({ min: 0, max: 128 })).map(([v, len]) => IPNet.of(IP.fromValue(6, v), len));

/** Strings that look like what goes into a config or a lease, and strings that do not. */
const addressish = fc.oneof(
  ipv4Text,
  ipv6Text,
  v4Net.map(String),
  v6Net.map(String),
  fc.tuple(ipv4Text, fc.integer({ min: -2, max: 140 })).map(([ip, len]) => `${ip}/${len}`),
  fc.string(),
  fc.string({ unit: 'binary' }),
);
const anyValue: fc.Arbitrary<unknown> = fc.oneof(json, addressish, fc.integer({ min: -2, max: 140 }), fc.boolean(), fc.constant(null));

// ---------------------------------------------------------------------------

const CONFIG_KEYS = [
  'EnableIPv4', 'EnableIPv6', 'Network', 'SubnetLen', 'SubnetMin', 'SubnetMax',
  'IPv6Network', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax', 'Backend',
];
const BACKEND_KEYS = ['Type', 'VNI', 'Port', 'MTU', 'GBP', 'Learning', 'DirectRouting', 'Mode'];

/** What twilld does with a config: parse it, then let an implemented backend check its keys. */
function loadConfig(text: string): NetworkConfig {
  const config = parseNetworkConfig(text, KNOWN_BACKEND_TYPES);
  try {
    backendFactory(config.backend.type).validate(config.backend);
  } catch (err) {
    if (!(err instanceof BackendUnavailableError)) throw err; // known but not built: the agent reports it
  }
  return config;
}

/** Every refusal is a ConfigError in one short line; anything else thrown is a bug. */
function onlyConfigErrors(text: string): void {
  try {
    loadConfig(text);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.message.startsWith(`${err.field}: `), err.message).to.equal(true);
    expectOneShortLine(err.message);
  }
}

/** Objects with config keys in any case, holding anything from good values to nonsense. */
const configLike: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom(...CONFIG_KEYS).chain(anyCase), anyValue), { maxLength: 8 }),
    fc.option(
      fc.tuple(
        fc.oneof(fc.constantFrom(...KNOWN_BACKEND_TYPES), fc.string()).chain(anyCase),
        fc.array(fc.tuple(fc.constantFrom(...BACKEND_KEYS).chain(anyCase), anyValue), { maxLength: 4 }),
      ),
    ),
  )
  .map(([pairs, backend]) => {
    const obj: Record<string, unknown> = Object.fromEntries(pairs);
    if (backend) obj.Backend = { Type: backend[0], ...Object.fromEntries(backend[1]) };
    return obj;
  });

interface GeneratedConfig {
  readonly json: Record<string, unknown>;
  readonly network: IPNet;
  readonly subnetLen: number;
  readonly subnetMin: IP;
  readonly subnetMax: IP;
}

/** Valid IPv4 configs: a network /8../26, maybe a SubnetLen, maybe bounds, with the values they must parse to. */
const validConfig: fc.Arbitrary<GeneratedConfig> = fc
  .record({
    prefix: fc.integer({ min: 8, max: 26 }),
    address: ipv4Value,
    lenOffset: fc.option(fc.integer({ min: 2, max: 22 })),
    bounds: fc.record({ min: fc.option(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })), max: fc.option(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })) }),
    backend: fc.constantFrom(...KNOWN_BACKEND_TYPES),
    enableIPv4: fc.boolean(),
  })
  .map(({ prefix, address, lenOffset, bounds, backend, enableIPv4 }) => {
    const network = IPNet.of(IP.fromValue(4, address), prefix);
    const givenLen = lenOffset === null ? undefined : Math.min(30, prefix + lenOffset);
    const subnetLen = givenLen ?? (prefix <= 22 ? 24 : prefix + 2);
    const count = 1n << BigInt(subnetLen - prefix);
    const size = 1n << BigInt(32 - subnetLen);
    const nth = (i: bigint) => IP.fromValue(4, network.ip.value + i * size);
    // Indices of the bounds: SubnetMin may be any subnet up to SubnetMax (the last by default),
    // SubnetMax any from SubnetMin (the second by default) on.
    let minIdx = bounds.min === null ? undefined : BigInt(Math.floor(bounds.min * Number(count)));
    let maxIdx = bounds.max === null ? undefined : 1n + BigInt(Math.floor(bounds.max * Number(count - 1n)));
    if (minIdx !== undefined && maxIdx !== undefined && minIdx > maxIdx) [minIdx, maxIdx] = [maxIdx, minIdx];
    // The all-zero address means "unset", as in flanneld.
    const effMin = minIdx === undefined || nth(minIdx).value === 0n ? 1n : minIdx;
    const effMax = maxIdx === undefined ? count - 1n : maxIdx;
    const obj: Record<string, unknown> = { Network: network.toString() };
    if (givenLen !== undefined) obj.SubnetLen = givenLen;
    if (minIdx !== undefined) obj.SubnetMin = nth(minIdx).toString();
    if (maxIdx !== undefined) obj.SubnetMax = nth(maxIdx).toString();
    if (enableIPv4) obj.EnableIPv4 = true;
    obj.Backend = { Type: backend };
    return { json: obj, network, subnetLen, subnetMin: nth(effMin), subnetMax: nth(effMax) };
  })
  .filter((g) => g.subnetMin.value <= g.subnetMax.value);

/** A parsed config as plain text values, to compare two parses. */
function summary(c: NetworkConfig): Record<string, unknown> {
  return {
    network: c.network?.toString(), subnetLen: c.subnetLen, subnetMin: c.subnetMin?.toString(), subnetMax: c.subnetMax?.toString(),
    enableIPv4: c.enableIPv4, enableIPv6: c.enableIPv6, backend: c.backend.type, warnings: c.warnings,
  };
}

describe('properties', () => {
  describe('network config parser', () => {
    it('throws nothing but a one-line ConfigError for any text', () => {
      check(fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), json.map((v) => JSON.stringify(v))), onlyConfigErrors), 500);
    });

    it('throws nothing but a one-line ConfigError for objects with every config and backend key, holding anything', () => {
      check(fc.property(configLike, (obj) => onlyConfigErrors(JSON.stringify(obj))), 1000);
    });

    it('puts SubnetMin and SubnetMax of a valid config inside Network, on SubnetLen boundaries, in order', () => {
      check(fc.property(validConfig, (g) => {
        const c = loadConfig(JSON.stringify(g.json));
        expect(c.warnings).to.deep.equal([]);
        expect(c.network?.toString()).to.equal(g.network.toString());
        expect(c.subnetLen).to.equal(g.subnetLen);
        const [min, max] = [c.subnetMin!, c.subnetMax!];
        for (const bound of [min, max]) {
          expect(g.network.covers(IPNet.of(bound, c.subnetLen)), `${bound} inside ${g.network}`).to.equal(true);
          expect(IPNet.of(bound, c.subnetLen).ip.equals(bound), `${bound} on a /${c.subnetLen} boundary`).to.equal(true);
        }
        expect(min.value <= max.value, `${min} <= ${max}`).to.equal(true);
        expect([min.toString(), max.toString()]).to.deep.equal([g.subnetMin.toString(), g.subnetMax.toString()]);
      }));
    });

    it('parses a valid config the same whatever the case of its keys', () => {
      const twoCasings = validConfig.chain((g) =>
        fc.tuple(fc.constant(g), recased(g.json, ['Backend']), recased(g.json, ['Backend'])));
      check(fc.property(twoCasings, ([g, a, b]) => {
        const expected = summary(loadConfig(JSON.stringify(g.json)));
        expect(summary(loadConfig(JSON.stringify(a))), JSON.stringify(a)).to.deep.equal(expected);
        expect(summary(loadConfig(JSON.stringify(b))), JSON.stringify(b)).to.deep.equal(expected);
      }));
    });
  });

  // -------------------------------------------------------------------------

  describe('lease codec', () => {
    const backendName = fc.stringMatching(/^[a-z0-9-]{1,32}$/);
    const isEmpty = (v: unknown) =>
      v === undefined || v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
    const data = fc.option(json, { nil: undefined });
    const attrs: fc.Arbitrary<LeaseAttrs> = fc.record({
      publicIP: ipv4Text,
      publicIPv6: fc.option(ipv6Text, { nil: null }),
      backendType: fc.option(backendName, { nil: undefined }),
      backendData: data,
      backendV6Data: data,
      backends: fc.option(fc.array(fc.record({ type: backendName, data }, { requiredKeys: ['type'] }), { maxLength: 4 }), { nil: undefined }),
    }, { requiredKeys: ['publicIP', 'publicIPv6'] });

    /** What a node reads back: empty values are not written, so they come back absent. */
    function asRead(a: LeaseAttrs): LeaseAttrs {
      return {
        publicIP: a.publicIP,
        publicIPv6: a.publicIPv6,
        backendType: a.backendType || undefined,
        backendData: isEmpty(a.backendData) ? undefined : a.backendData,
        backendV6Data: isEmpty(a.backendV6Data) ? undefined : a.backendV6Data,
        backends: a.backends?.length
          ? a.backends.map((b): BackendAdvert => (isEmpty(b.data) ? { type: b.type } : { type: b.type, data: b.data }))
          : undefined,
      };
    }

    it('reads back every lease value it writes, and writes it again byte for byte', () => {
      check(fc.property(attrs, (a) => {
        const text = encodeLeaseAttrs(a);
        const read = decodeLeaseAttrs(text);
        expect(read).to.deep.equal(asRead(a));
        expect(encodeLeaseAttrs(read)).to.equal(text);
      }), 500);
    });

    /** Lease-shaped JSON with any values under any case of the field names. */
    const leaseLike = fc
      .array(
        fc.tuple(
          fc.constantFrom('PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data', 'TwillBackends').chain(anyCase),
          fc.oneof(anyValue, fc.array(fc.oneof(anyValue, fc.record({ Type: anyValue, Data: anyValue }, { requiredKeys: [] })), { maxLength: 3 })),
        ),
        { maxLength: 6 },
      )
      .map((pairs) => JSON.stringify(Object.fromEntries(pairs)));

    it('throws nothing but a one-line LeaseFormatError for any lease value', () => {
      const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), json.map((v) => JSON.stringify(v)), leaseLike);
      check(fc.property(text, (t) => {
        try {
          decodeLeaseAttrs(t);
        } catch (err) {
          if (!(err instanceof LeaseFormatError)) throw err;
          expectOneShortLine(err.message);
        }
      }), 1000);
    });

    const keyish = fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary' }),
      fc.array(fc.constantFrom('0', '1', '10', '25', '255', '256', '01', '.', '-', '&', ':', '::', 'f', 'fc00', '/', ' ', '\n', '999'), { maxLength: 24 }).map((a) => a.join('')),
      fc.tuple(v4Net, fc.option(v6Net), fc.nat(60), fc.string({ maxLength: 3 })).map(([v4, v6, at, insert]) => {
        const key = formatSubnetKey({ subnet: v4, ipv6Subnet: v6 ?? undefined });
        const i = at % (key.length + 1);
        return key.slice(0, i) + insert + key.slice(i + 1);
      }),
    );

    it('throws nothing but a one-line LeaseFormatError for any key', () => {
      check(fc.property(keyish, (key) => {
        try {
          parseSubnetKey(key);
        } catch (err) {
          if (!(err instanceof LeaseFormatError)) throw err;
          expect(err.what).to.equal('key');
          expectOneShortLine(err.message);
        }
      }), 1000);
    });

    it('reads back every key it writes, single or dual stack, and writes it again unchanged', () => {
      check(fc.property(v4Net, fc.option(v6Net, { nil: undefined }), (subnet, ipv6Subnet) => {
        const key: SubnetKey = { subnet, ipv6Subnet };
        const text = formatSubnetKey(key);
        if (subnet.prefixLen === 0 && !ipv6Subnet) {
          // 0.0.0.0-0 is the empty IPv4 part of an IPv6-only key: alone it holds no subnet.
          expect(() => parseSubnetKey(text)).to.throw(LeaseFormatError, /holds no subnet/);
          return;
        }
        const read = parseSubnetKey(text);
        expect(read.subnet.equals(subnet), `${text}: ${read.subnet}`).to.equal(true);
        expect(read.ipv6Subnet?.toString(), text).to.equal(ipv6Subnet?.toString());
        expect(formatSubnetKey(read)).to.equal(text);
      }), 1000);
    });
  });

  // -------------------------------------------------------------------------

  describe('subnet allocator', () => {
    interface Scenario {
      readonly range: AllocationRange;
      readonly taken: ReadonlySet<string>;
      readonly random: number;
    }

    /** A family's part of a scenario: a network, a range of at most 300 subnets in it, and what is taken. */
    function familyPart(bits: 32 | 128, prefixes: { min: number; max: number }, maxLen: number) {
      const family = bits === 32 ? 4 : 6;
      const value = family === 4 ? ipv4Value : ipv6Value;
      return fc
        .record({
          address: value,
          prefix: fc.integer(prefixes),
          lenOffset: fc.integer({ min: 2, max: 12 }),
          start: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
          span: fc.integer({ min: 0, max: 300 }),
        })
        .chain(({ address, prefix, lenOffset, start, span }) => {
          const network = IPNet.of(IP.fromValue(family, address), prefix);
          const len = Math.min(maxLen, prefix + lenOffset);
          const count = 1 << (len - prefix);
          const firstIdx = Math.floor(start * count);
          const lastIdx = Math.min(count - 1, firstIdx + span);
          const subnet = (i: number) => IPNet.of(network.ip, len).step(i);
          const inRange = lastIdx - firstIdx + 1;
          // Same-length subnets taken: none, all, all but one, or any of the range and just outside it.
          const sameLength = fc.oneof(
            fc.constant<number[]>([]),
            fc.constant(Array.from({ length: inRange }, (_, i) => firstIdx + i)),
            fc.nat(inRange - 1).map((skip) => Array.from({ length: inRange }, (_, i) => firstIdx + i).filter((i) => i !== firstIdx + skip)),
            fc.uniqueArray(fc.integer({ min: Math.max(0, firstIdx - 2), max: Math.min(count - 1, lastIdx + 2) }), { maxLength: inRange + 4 }),
          );
          // Subnets of other lengths (an earlier SubnetLen, a mistake), anywhere near the network.
          const otherLength = fc.array(
            fc.tuple(fc.bigInt({ min: 0n, max: network.size - 1n }), fc.integer({ min: Math.max(0, prefix - 2), max: bits })).map(
              ([offset, l]) => IPNet.of(IP.fromValue(family, network.ip.value + offset), l),
            ),
            { maxLength: 3 },
          );
          return fc.record({
            first: fc.constant(subnet(firstIdx)),
            last: fc.constant(subnet(lastIdx)),
            taken: fc.tuple(sameLength, otherLength).map(([same, others]) => [
              ...same.map((i) => subnet(i).toString()),
              ...others.filter((o) => o.prefixLen !== len).map(String),
            ]),
          });
        });
    }

    const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
    const junk = fc.array(fc.constantFrom('garbage', '', '10.0.0.0', 'fc00::', '10.0.0.0/40'), { maxLength: 2 });

    const singleStack: fc.Arbitrary<Scenario> = fc
      .tuple(familyPart(32, { min: 8, max: 26 }, 30), junk, random)
      .map(([v4, j, r]) => ({ range: { first: v4.first, last: v4.last }, taken: new Set([...v4.taken, ...j]), random: r }));

    const dualStack: fc.Arbitrary<Scenario> = fc
      .tuple(familyPart(32, { min: 8, max: 26 }, 30), familyPart(128, { min: 32, max: 120 }, 126), junk, random)
      .map(([v4, v6, j, r]) => ({
        range: { first: v4.first, last: v4.last, firstV6: v6.first, lastV6: v6.last },
        taken: new Set([...v4.taken, ...v6.taken, ...j]),
        random: r,
      }));

    /** Brute force: every candidate of the range in order, paired across families, free when it overlaps nothing taken. */
    function freeByBruteForce(s: Scenario): SubnetKey[] {
      const taken = [...s.taken].flatMap((t) => {
        try {
          return [IPNet.parse(t)];
        } catch {
          return [];
        }
      });
      const free = (n: IPNet) => !taken.some((t) => t.overlaps(n));
      const out: SubnetKey[] = [];
      const max = (n: IPNet) => (1n << BigInt(n.ip.bits)) - 1n;
      for (let i = 0n; ; i++) {
        const first = s.range.first!;
        const v4Value = first.ip.value + i * first.size;
        if (v4Value > s.range.last!.ip.value || v4Value > max(first)) break;
        const v4 = IPNet.of(IP.fromValue(4, v4Value), first.prefixLen);
        let v6: IPNet | undefined;
        if (s.range.firstV6 && s.range.lastV6) {
          const v6Value = s.range.firstV6.ip.value + i * s.range.firstV6.size;
          if (v6Value > s.range.lastV6.ip.value || v6Value > max(s.range.firstV6)) break;
          v6 = IPNet.of(IP.fromValue(6, v6Value), s.range.firstV6.prefixLen);
        }
        if (free(v4) && (!v6 || free(v6))) out.push(v6 ? { subnet: v4, ipv6Subnet: v6 } : { subnet: v4 });
      }
      return out;
    }

    const show = (k: SubnetKey) => (k.ipv6Subnet ? `${k.subnet} ${k.ipv6Subnet}` : `${k.subnet}`);

    function pickIsSound(s: Scenario): void {
      const free = freeByBruteForce(s);
      let picked: SubnetKey;
      try {
        picked = pickSubnet(s.range, s.taken, () => s.random);
      } catch (err) {
        if (!(err instanceof OutOfSubnetsError)) throw err;
        expect(free.map(show), 'OutOfSubnetsError while these are free').to.deep.equal([]);
        return;
      }
      expect(free.length, `picked ${show(picked)} though nothing is free`).to.be.above(0);
      const takenNets = [...s.taken].flatMap((t) => { try { return [IPNet.parse(t)]; } catch { return []; } });
      const pairs: [IPNet, IPNet, IPNet][] = [[picked.subnet, s.range.first!, s.range.last!]];
      if (s.range.firstV6 && s.range.lastV6) {
        expect(picked.ipv6Subnet, 'an IPv6 subnet in dual stack').to.not.equal(undefined);
        pairs.push([picked.ipv6Subnet!, s.range.firstV6, s.range.lastV6]);
      }
      for (const [subnet, first, last] of pairs) {
        expect(subnet.prefixLen, `${subnet} has the range's length`).to.equal(first.prefixLen);
        expect(IPNet.of(subnet.ip, subnet.prefixLen).equals(subnet), `${subnet} aligned`).to.equal(true);
        expect(first.ip.value <= subnet.ip.value && subnet.ip.value <= last.ip.value, `${subnet} within ${first} .. ${last}`).to.equal(true);
        expect(s.taken.has(subnet.toString()), `${subnet} is taken`).to.equal(false);
        const overlapping = takenNets.filter((t) => t.overlaps(subnet)).map(String);
        expect(overlapping, `${subnet} overlaps taken subnets`).to.deep.equal([]);
      }
      // As flanneld: one of the first CANDIDATE_WINDOW free subnets, in order.
      const window = free.slice(0, CANDIDATE_WINDOW).map(show);
      expect(freeSubnets(s.range, s.taken).map(show)).to.deep.equal(window);
      expect(window).to.include(show(picked));
    }

    it('picks a free, aligned, in-range subnet overlapping nothing taken, or throws OutOfSubnetsError exactly when none is free', () => {
      check(fc.property(singleStack, pickIsSound), 400);
    });

    it('does the same for dual-stack pairs, both halves free', () => {
      check(fc.property(dualStack, pickIsSound), 300);
    });
  });
});
