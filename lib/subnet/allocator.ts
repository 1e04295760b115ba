/**
 * Choosing a free subnet, as flanneld does: walk from SubnetMin to SubnetMax,
 * collect the first 100 free subnets (paired with IPv6 subnets in dual
 * stack; IPv6 subnets alone, keyed `0.0.0.0-0&...`, in an IPv6-only
 * network), and pick one at random so that nodes starting together rarely
 * collide. Pure: the caller supplies the taken set and the random source.
 */
import { IP, IPNet } from '../ip';
import type { NetworkConfig } from '../config';
import type { SubnetKey } from './lease-codec';
import { NO_IPV4_SUBNET } from './lease';

export const CANDIDATE_WINDOW = 100;

/** No free subnet is left between SubnetMin and SubnetMax. */
export class OutOfSubnetsError extends Error {
  constructor(readonly range: string) {
    super(`out of subnets: every subnet in ${range} is leased or reserved; free one (or widen SubnetMin/SubnetMax) and this node will retry`);
    this.name = 'OutOfSubnetsError';
  }
}

export interface AllocationRange {
  /** The IPv4 subnets, SubnetMin .. SubnetMax; absent in an IPv6-only network. */
  readonly first?: IPNet;
  readonly last?: IPNet;
  /** The IPv6 subnets, IPv6SubnetMin .. IPv6SubnetMax; absent without EnableIPv6. */
  readonly firstV6?: IPNet;
  readonly lastV6?: IPNet;
}

export function allocationRange(config: NetworkConfig): AllocationRange {
  const v4 = config.enableIPv4 && config.network && config.subnetMin && config.subnetMax
    ? { first: IPNet.of(config.subnetMin, config.subnetLen), last: IPNet.of(config.subnetMax, config.subnetLen) }
    : undefined;
  const v6 = config.enableIPv6 && config.ipv6Network && config.ipv6SubnetMin && config.ipv6SubnetMax
    ? { firstV6: IPNet.of(config.ipv6SubnetMin, config.ipv6SubnetLen), lastV6: IPNet.of(config.ipv6SubnetMax, config.ipv6SubnetLen) }
    : undefined;
  if (!v4 && !v6) throw new Error('the network config has neither an IPv4 Network nor an IPv6Network to allocate subnets from');
  return { ...v4, ...v6 };
}

export function describeRange(range: AllocationRange): string {
  const parts: string[] = [];
  if (range.first && range.last) parts.push(`${range.first.toString()} .. ${range.last.toString()}`);
  if (range.firstV6 && range.lastV6) parts.push(`${range.firstV6.toString()} .. ${range.lastV6.toString()}`);
  return parts.join(' and ');
}

/**
 * The first `CANDIDATE_WINDOW` free subnets in the range, in order (pairs
 * in dual stack; IPv6 subnets with flanneld's empty IPv4 part, IPv6 only).
 * `taken` holds `IPNet.toString()` of every subnet in use (both families).
 * A subnet is free when it overlaps none of them, as in flanneld: a lease
 * of another length (written under an earlier SubnetLen) blocks every
 * subnet it overlaps, not only one of the same address.
 */
export function freeSubnets(range: AllocationRange, taken: ReadonlySet<string>, limit = CANDIDATE_WINDOW): SubnetKey[] {
  const out: SubnetKey[] = [];
  const inUse = overlapTest(range, taken);
  let v4: IPNet | undefined = range.first;
  let v6: IPNet | undefined = range.firstV6;
  const overflows = (net: IPNet) => net.ip.value + net.size > maxValue(net.ip);
  while (v4 || v6) {
    if (v4 && range.last && v4.ip.value > range.last.ip.value) break;
    if (v6 && range.lastV6 && v6.ip.value > range.lastV6.ip.value) break;
    if (!(v4 && inUse(v4)) && !(v6 && inUse(v6))) {
      out.push(v6 ? { subnet: v4 ?? NO_IPV4_SUBNET, ipv6Subnet: v6 } : { subnet: v4! });
      if (out.length >= limit) break;
    }
    if ((v4 && overflows(v4)) || (v6 && overflows(v6))) break;
    v4 = v4?.step(1);
    v6 = v6?.step(1);
  }
  return out;
}

/**
 * Whether a subnet of the range's length overlaps one in `taken`. Subnets
 * of that length overlap only when equal, so a set lookup settles them;
 * taken subnets of other lengths (normally none) are checked one by one.
 */
function overlapTest(range: AllocationRange, taken: ReadonlySet<string>): (subnet: IPNet) => boolean {
  const lengths = new Map<number, number>();
  if (range.first) lengths.set(4, range.first.prefixLen);
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
 * Only the families the range allocates are looked at.
 */
export function isFreeSubnet(range: AllocationRange, taken: ReadonlySet<string>, wanted: Partial<SubnetKey>): boolean {
  const inUse = overlapTest(range, taken);
  const fits = (net: IPNet | undefined, first: IPNet, last: IPNet) =>
    net !== undefined && net.prefixLen === first.prefixLen && net.family === first.family && first.ip.value <= net.ip.value && net.ip.value <= last.ip.value && !inUse(net);
  if (range.first && range.last && !fits(wanted.subnet, range.first, range.last)) return false;
  if (range.firstV6 && range.lastV6 && !fits(wanted.ipv6Subnet, range.firstV6, range.lastV6)) return false;
  return true;
}

/** `wanted` as the key to create, when it is free (`isFreeSubnet`); undefined otherwise. */
export function wantedSubnet(range: AllocationRange, taken: ReadonlySet<string>, wanted: Partial<SubnetKey>): SubnetKey | undefined {
  if (!wanted.subnet && !wanted.ipv6Subnet) return undefined;
  if (!isFreeSubnet(range, taken, wanted)) return undefined;
  const subnet = range.first ? wanted.subnet! : NO_IPV4_SUBNET;
  return range.firstV6 ? { subnet, ipv6Subnet: wanted.ipv6Subnet } : { subnet };
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
