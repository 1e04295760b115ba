/**
 * Choosing a free subnet, as flanneld does: walk from SubnetMin to SubnetMax,
 * collect the first 100 free subnets (paired with IPv6 subnets in dual
 * stack), and pick one at random so that nodes starting together rarely
 * collide. Pure: the caller supplies the taken set and the random source.
 */
import { IP, IPNet } from '../ip';
import type { NetworkConfig } from '../config';
import type { SubnetKey } from './lease-codec';

export const CANDIDATE_WINDOW = 100;

/** No free subnet is left between SubnetMin and SubnetMax. */
export class OutOfSubnetsError extends Error {
  constructor(readonly range: string) {
    super(`out of subnets: every subnet in ${range} is leased or reserved; free one (or widen SubnetMin/SubnetMax) and this node will retry`);
    this.name = 'OutOfSubnetsError';
  }
}

export interface AllocationRange {
  readonly first: IPNet;
  readonly last: IPNet;
  readonly firstV6?: IPNet;
  readonly lastV6?: IPNet;
}

export function allocationRange(config: NetworkConfig): AllocationRange {
  if (!config.network || !config.subnetMin || !config.subnetMax) {
    throw new Error('twill needs an IPv4 Network to allocate subnets (IPv6-only networks are not supported yet)');
  }
  const range: AllocationRange = {
    first: IPNet.of(config.subnetMin, config.subnetLen),
    last: IPNet.of(config.subnetMax, config.subnetLen),
  };
  if (config.enableIPv6 && config.ipv6Network && config.ipv6SubnetMin && config.ipv6SubnetMax) {
    return {
      ...range,
      firstV6: IPNet.of(config.ipv6SubnetMin, config.ipv6SubnetLen),
      lastV6: IPNet.of(config.ipv6SubnetMax, config.ipv6SubnetLen),
    };
  }
  return range;
}

export function describeRange(range: AllocationRange): string {
  const v4 = `${range.first.toString()} .. ${range.last.toString()}`;
  return range.firstV6 && range.lastV6 ? `${v4} and ${range.firstV6.toString()} .. ${range.lastV6.toString()}` : v4;
}

/**
 * The first `CANDIDATE_WINDOW` free subnets in the range, in order.
 * `taken` holds `IPNet.toString()` of every subnet in use (both families).
 * A subnet is free when it overlaps none of them, as in flanneld: a lease
 * of another length (written under an earlier SubnetLen) blocks every
 * subnet it overlaps, not only one of the same address.
 */
export function freeSubnets(range: AllocationRange, taken: ReadonlySet<string>, limit = CANDIDATE_WINDOW): SubnetKey[] {
  const out: SubnetKey[] = [];
  const inUse = overlapTest(range, taken);
  let v4: IPNet = range.first;
  let v6: IPNet | undefined = range.firstV6;
  for (;;) {
    if (v4.ip.value > range.last.ip.value) break;
    if (v6 && range.lastV6 && v6.ip.value > range.lastV6.ip.value) break;
    if (!inUse(v4) && !(v6 && inUse(v6))) {
      out.push(v6 ? { subnet: v4, ipv6Subnet: v6 } : { subnet: v4 });
      if (out.length >= limit) break;
    }
    if (v4.ip.value + v4.size > maxValue(v4.ip)) break;
    v4 = v4.step(1);
    if (v6) v6 = v6.ip.value + v6.size > maxValue(v6.ip) ? undefined : v6.step(1);
    if (range.firstV6 && !v6) break;
  }
  return out;
}

/**
 * Whether a subnet of the range's length overlaps one in `taken`. Subnets
 * of that length overlap only when equal, so a set lookup settles them;
 * taken subnets of other lengths (normally none) are checked one by one.
 */
function overlapTest(range: AllocationRange, taken: ReadonlySet<string>): (subnet: IPNet) => boolean {
  const lengths = new Map<number, number>([[4, range.first.prefixLen]]);
  if (range.firstV6) lengths.set(6, range.firstV6.prefixLen);
  const others: IPNet[] = [];
  for (const text of taken) {
    const family = text.includes(':') ? 6 : 4;
    const len = lengths.get(family);
    if (len === undefined || text.endsWith(`/${len}`)) continue;
    try {
      others.push(IPNet.parse(text, { want: family, allowHostBits: true }));
    } catch {
      // Not a subnet: it blocks nothing.
    }
  }
  return (subnet) => taken.has(subnet.toString()) || others.some((o) => o.overlaps(subnet));
}

/**
 * Whether `wanted` (a previous subnet.env subnet, or the subnet of a lost
 * lease) can be taken as it is: in the range, of the range's length, and
 * overlapping nothing in `taken` — the same rule `freeSubnets` applies.
 */
export function isFreeSubnet(range: AllocationRange, taken: ReadonlySet<string>, wanted: SubnetKey): boolean {
  const inUse = overlapTest(range, taken);
  const fits = (net: IPNet, first: IPNet, last: IPNet) =>
    net.prefixLen === first.prefixLen && net.family === first.family && first.ip.value <= net.ip.value && net.ip.value <= last.ip.value && !inUse(net);
  if (!fits(wanted.subnet, range.first, range.last)) return false;
  if (!range.firstV6 || !range.lastV6) return true;
  return wanted.ipv6Subnet !== undefined && fits(wanted.ipv6Subnet, range.firstV6, range.lastV6);
}

function maxValue(ip: IP): bigint {
  return (1n << BigInt(ip.bits)) - 1n;
}

/** A random one of the first free subnets; throws OutOfSubnetsError when none is free. */
export function pickSubnet(range: AllocationRange, taken: ReadonlySet<string>, random: () => number = Math.random): SubnetKey {
  const free = freeSubnets(range, taken);
  if (free.length === 0) throw new OutOfSubnetsError(describeRange(range));
  return free[Math.floor(random() * free.length)];
}
