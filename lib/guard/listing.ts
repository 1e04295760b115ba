/**
 * Reads `nft -j list table ip twill_guard` (or `ip6 twill_guard`) into what the guard's diff
 * compares (plan.ts `SeenGuard`): named counters with their values, set
 * elements in the plan's canonical form (with the per-element packet
 * counts of `peers`), and each chain's hook and rule comments.
 *
 * Failure semantics: text that is not nft's JSON throws
 * `GuardListingError`; objects of kinds it does not know are ignored.
 */
import type { SeenGuard } from './plan';

export class GuardListingError extends Error {
  constructor(detail: string) {
    super(`cannot read nft's listing of the tunnel guard table: ${detail}`);
    this.name = 'GuardListingError';
  }
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseGuardListing(text: string): SeenGuard {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new GuardListingError(`not JSON (${(err as Error).message})`);
  }
  const items = isObject(doc) ? doc.nftables : undefined;
  if (!Array.isArray(items)) throw new GuardListingError('no "nftables" array');
  const counters = new Map<string, { packets: number; bytes: number }>();
  const sets = new Map<string, { elements: string[]; packets: Map<string, number> }>();
  const chains = new Map<string, { hook?: string; comments: string[] }>();
  const rules: Json[] = [];
  for (const item of items) {
    if (!isObject(item)) continue;
    if (isObject(item.counter)) {
      const c = item.counter;
      counters.set(String(c.name), { packets: Number(c.packets) || 0, bytes: Number(c.bytes) || 0 });
    } else if (isObject(item.set)) {
      const s = item.set;
      const elements: string[] = [];
      const packets = new Map<string, number>();
      // `other_subnets` pairs an address with an inner source of the other family (plan.ts).
      const other = s.name === 'other_subnets';
      for (const e of Array.isArray(s.elem) ? s.elem : []) {
        const { key, count } = element(e, other);
        if (key === undefined) continue;
        elements.push(key);
        if (count !== undefined) packets.set(key, count);
      }
      sets.set(String(s.name), { elements, packets });
    } else if (isObject(item.chain)) {
      const c = item.chain;
      chains.set(String(c.name), { ...(typeof c.hook === 'string' ? { hook: c.hook } : {}), comments: [] });
    } else if (isObject(item.rule)) {
      rules.push(item.rule);
    }
  }
  // Rules follow their chains in nft's listing, in order; collected after, in case they do not.
  for (const r of rules) chains.get(String(r.chain))?.comments.push(typeof r.comment === 'string' ? r.comment : '');
  return { counters, sets, chains };
}

/**
 * One set element in canonical form: `198.18.0.2`, or for the subnets set
 * `198.18.0.2 . 183763200-183763455`; with its packet counter when the set
 * keeps one (`{"elem": {"val": …, "counter": {…}}}`).
 */
function element(e: unknown, otherFamily = false): { key?: string; count?: number } {
  if (typeof e === 'string') return { key: e };
  if (!isObject(e)) return {};
  if (isObject(e.elem)) {
    const inner = element(e.elem.val, otherFamily);
    const counter = e.elem.counter;
    return { key: inner.key, ...(isObject(counter) ? { count: Number(counter.packets) || 0 } : {}) };
  }
  if (Array.isArray(e.concat)) {
    // The integer after an IPv6 address is an inner IPv6 source, 128 bits wide (in `other_subnets`, an IPv4 one).
    const v6 = typeof e.concat[0] === 'string' && e.concat[0].includes(':');
    const bits = v6 !== otherFamily ? 128 : 32;
    const parts = e.concat.map((p) => part(p, bits));
    return parts.every((p) => p !== undefined) ? { key: parts.join(' . ') } : {};
  }
  return {};
}

/** A set key part: an address as nft prints it, or an integer (range) in decimal; nft prints 128-bit integers as hex strings. */
function part(p: unknown, bits: number): string | undefined {
  if (typeof p === 'string') {
    if (!/^0x[0-9a-f]+$/i.test(p)) return p;
    const n = BigInt(p);
    return `${n}-${n}`;
  }
  if (typeof p === 'number') return `${p}-${p}`;
  if (isObject(p) && Array.isArray(p.range) && p.range.length === 2) {
    const [lo, hi] = p.range.map(integer);
    return lo !== undefined && hi !== undefined ? `${lo}-${hi}` : undefined;
  }
  if (isObject(p) && isObject(p.prefix)) {
    // nft may print a range that is a whole prefix of an integer as one; widen it back.
    const addr = integer(p.prefix.addr);
    const len = Number(p.prefix.len);
    if (addr === undefined || !Number.isInteger(len) || len < 0 || len > bits) return undefined;
    const size = 1n << BigInt(bits - len);
    return `${addr}-${addr + size - 1n}`;
  }
  return undefined;
}

function integer(v: unknown): bigint | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v)) return BigInt(v);
  return undefined;
}
