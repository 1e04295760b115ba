/**
 * The tunnel guard's plan (issue 15): which underlay packets twill's own
 * nftables table `ip twill_guard` drops, computed purely from the usable
 * peers (the same lease filter the backends use, backends/assignment.ts)
 * and the intakes the running backends' plans state (backends/intake.ts).
 *
 * For every intake (VXLAN on its port, udp on its port, IP protocol 4):
 * - a packet whose outer source is no peer's public IP is dropped and
 *   counted in the named counter `unknown_<kind>`;
 * - a packet from a peer whose inner IPv4 source lies outside that peer's
 *   subnet is counted in `spoofed_<kind>`, then goes to the chain
 *   `spoofed`, which counts it once more per peer (the `peers` set keeps a
 *   counter per element; a lookup that matches bumps it) and drops it.
 *
 * Sets: `peers` (public IPs) and `subnets` (public IP . inner source as a
 * 32-bit integer range; nft's raw payload `@th,…` is an integer, so the
 * subnet is written as one). The one `subnets` set serves every intake:
 * only the offset of the inner header differs between rules.
 *
 * IPv6 (vxlan's `flannel-v6.<VNI>`, VXLAN between PublicIPv6 addresses)
 * has a table of its own, `ip6 twill_guard`, planned by the same code for
 * family 6: the same sets, counters and chains, keyed by the peers'
 * PublicIPv6, with the inner IPv6 source (128 bits) checked against the
 * peer's IPv6 subnet. VXLAN can carry either family inside either: a
 * frame of the other family (IPv6 inside the IPv4 underlay, IPv4 inside the
 * IPv6 one) is checked against the peer's subnet of that family in the set
 * `other_subnets` (keyed by the same outer address); a peer without one may
 * send none. flanneld's devices never carry such frames, so this costs
 * legitimate traffic nothing but one ethertype comparison.
 *
 * The diff (`guardScript`) changes only what differs, in one `nft -f -`
 * transaction: elements are added and deleted one by one, a chain whose
 * rules differ is flushed and refilled, and the table itself is never
 * flushed, so the named counters and the per-peer counters keep counting
 * across updates. Rules are recognised by their comment.
 */
import { IP, type IPNet } from '../ip';
import type { Lease } from '../subnet';
import { NO_PUBLIC_IP, carriesIPv4 } from '../subnet/lease';
import { byCodeUnit } from '../order';
import { type Intake, type IntakeKind, type UnderlayFamily, intakeFamily, intakeLabel } from '../../backends/intake';
import { unusablePeer } from '../../backends/assignment';

export const GUARD_TABLE = 'twill_guard';
export const GUARD_FAMILIES: readonly UnderlayFamily[] = [4, 6];
/** `ip twill_guard` or `ip6 twill_guard`, as nft names the table. */
export function guardTableName(family: UnderlayFamily = 4): string {
  return `${family === 6 ? 'ip6' : 'ip'} ${GUARD_TABLE}`;
}
export const INPUT_CHAIN = 'input';
export const SPOOFED_CHAIN = 'spoofed';
export const PEERS_SET = 'peers';
export const SUBNETS_SET = 'subnets';
/** Outer address . inner source of the other family (vxlan only). */
export const OTHER_SUBNETS_SET = 'other_subnets';
/** Before the default filter priority, so no accept elsewhere lets a packet through first. */
const INPUT_HOOK = 'type filter hook input priority filter - 10; policy accept;';

export type DropReason = 'unknown_source' | 'spoofed_source';

/** A peer as the guard sees it: where its packets come from and which inner sources it may send. */
export interface GuardPeer {
  /** Its lease key, for the log. */
  readonly key: string;
  readonly publicIP: string;
  /** Its IPv4 subnet; absent for a peer of an IPv6-only network. */
  readonly subnet?: IPNet;
  /** Its PublicIPv6 and IPv6 subnet (dual stack, IPv6 only), when it publishes them. */
  readonly publicIPv6?: string;
  readonly ipv6Subnet?: IPNet;
}

export interface GuardRule {
  /** Identifies the rule in the kernel's listing. */
  readonly comment: string;
  /** The rule without its comment. */
  readonly text: string;
}

/** What the table should hold. */
export interface GuardState {
  /** Which table: `ip twill_guard` (4) or `ip6 twill_guard` (6). */
  readonly family: UnderlayFamily;
  /** Public IPs, sorted, each once. */
  readonly peers: readonly string[];
  /** `subnets` elements in canonical form: `198.18.0.2 . 183763200-183763455`. */
  readonly subnets: readonly string[];
  /** `other_subnets` elements: public IP . the peer's subnet of the other family, as integers. */
  readonly otherSubnets: readonly string[];
  readonly counters: readonly string[];
  readonly input: readonly GuardRule[];
  readonly spoofed: readonly GuardRule[];
  readonly intakes: readonly Intake[];
  /** Peers left out, with the reason. */
  readonly skipped: readonly string[];
}

/** What the kernel holds of the table (lib/guard/listing.ts reads it); undefined: no table. */
export interface SeenGuard {
  readonly counters: ReadonlyMap<string, { readonly packets: number; readonly bytes: number }>;
  /** Set name → its elements in canonical form, and for `peers` the per-element packet counts. */
  readonly sets: ReadonlyMap<string, { readonly elements: readonly string[]; readonly packets: ReadonlyMap<string, number> }>;
  /** Chain name → its hook (absent: a regular chain) and its rules' comments in order ('' for none). */
  readonly chains: ReadonlyMap<string, { readonly hook?: string; readonly comments: readonly string[] }>;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * The peers whose tunnel packets are accepted: every lease but this node's
 * own that the one lease filter (backends/assignment.ts `unusablePeer`)
 * lets through, whatever backend carries it — the userspace engines accept
 * the same peers (their table holds every usable peer).
 */
export function guardPeers(own: Lease, leases: Iterable<Lease>): GuardPeer[] {
  const out: GuardPeer[] = [];
  for (const l of leases) {
    if (l.key === own.key || unusablePeer(l, own)) continue;
    out.push({
      key: l.key, publicIP: l.attrs.publicIP,
      // An IPv6-only lease's empty IPv4 part (0.0.0.0/0) is no subnet it may send from.
      ...(carriesIPv4(l) ? { subnet: l.subnet } : {}),
      ...(l.attrs.publicIPv6 ? { publicIPv6: l.attrs.publicIPv6 } : {}),
      ...(l.ipv6Subnet ? { ipv6Subnet: l.ipv6Subnet } : {}),
    });
  }
  return out;
}

export function counterName(kind: IntakeKind, reason: DropReason): string {
  return `${reason === 'unknown_source' ? 'unknown' : 'spoofed'}_${kind}`;
}

/** Per family: the outer source match, where the inner source sits in the inner header, its width, the inner ethertype. */
const FAMILY = {
  4: { saddr: 'ip saddr', proto: 'ip protocol 4', sourceAt: 12, bits: 32, ethertype: '0x0800', addrType: 'ipv4_addr' },
  6: { saddr: 'ip6 saddr', proto: 'meta l4proto 4', sourceAt: 8, bits: 128, ethertype: '0x86dd', addrType: 'ipv6_addr' },
} as const;

/** The rules for one intake: its match, then the two drops (and for vxlan the inner check of the other family). */
function intakeRules(i: Intake): GuardRule[] {
  const family = intakeFamily(i);
  const f = FAMILY[family];
  const o = FAMILY[family === 6 ? 4 : 6];
  const match = i.port !== undefined ? `udp dport ${i.port}` : f.proto;
  const label = intakeLabel(i);
  const innerSource = (i.inner + f.sourceAt) * 8;
  const familyOnly = i.ethertypeAt !== undefined ? ` @th,${i.ethertypeAt * 8},16 ${f.ethertype}` : '';
  const unknown = { comment: `${label} unknown source`, text: `${match} ${f.saddr} != @${PEERS_SET} counter name "${counterName(i.kind, 'unknown_source')}" drop` };
  if (i.innerCheckedByEngine) return [unknown];
  return [
    unknown,
    {
      comment: `${label} spoofed source`,
      text: `${match}${familyOnly} ${f.saddr} . @th,${innerSource},${f.bits} != @${SUBNETS_SET} counter name "${counterName(i.kind, 'spoofed_source')}" goto ${SPOOFED_CHAIN}`,
    },
    ...(i.ethertypeAt === undefined ? [] : [{
      comment: `${label} spoofed ${family === 6 ? 'IPv4' : 'IPv6'} source`,
      text: `${match} @th,${i.ethertypeAt * 8},16 ${o.ethertype} ${f.saddr} . @th,${(i.inner + o.sourceAt) * 8},${o.bits} != @${OTHER_SUBNETS_SET} counter name "${counterName(i.kind, 'spoofed_source')}" goto ${SPOOFED_CHAIN}`,
    }]),
  ];
}

function spoofedRules(family: UnderlayFamily): GuardRule[] {
  return [
    { comment: 'count per peer', text: `${FAMILY[family].saddr} @${PEERS_SET}` },
    { comment: 'drop spoofed', text: 'drop' },
  ];
}

/** A peer's public address of `family` in nft's form (RFC 5952 for IPv6), or undefined when it is no plain address. */
function publicAddress(p: GuardPeer, family: UnderlayFamily): string | undefined {
  if (family === 4) return IPV4.test(p.publicIP) ? p.publicIP : undefined;
  return canonicalIPv6(p.publicIPv6);
}

/** A PublicIPv6 as nft prints it (RFC 5952); undefined unless it is a plain IPv6 address (no IPv4-mapped or dotted form). */
export function canonicalIPv6(text: string | null | undefined): string | undefined {
  if (typeof text !== 'string' || !/^[0-9a-fA-F:]+$/.test(text)) return undefined;
  try {
    const ip = IP.parse(text, 6);
    return ip.value >> 32n === 0xffffn ? undefined : ip.toString();
  } catch {
    return undefined;
  }
}

/**
 * The wanted table of `family` for these peers and intakes (those of other
 * families are left to the other table); undefined when no running backend
 * receives encapsulated traffic on that underlay (host-gw, alloc, an
 * IPv4-only cluster for 6): nothing to guard.
 */
export function planGuard(peers: readonly GuardPeer[], intakes: readonly Intake[], family: UnderlayFamily = 4): GuardState | undefined {
  const unique = new Map(intakes.filter((i) => intakeFamily(i) === family).map((i) => [intakeLabel(i), i]));
  if (unique.size === 0) return undefined;
  const sorted = [...unique.values()].sort((a, b) => byCodeUnit(intakeLabel(a), intakeLabel(b)));
  const skipped: string[] = [];
  const ips = new Set<string>();
  const subnets = new Set<string>();
  const other = new Set<string>();
  for (const p of peers) {
    // A lease's PublicIP(v6) comes from etcd: only a plain address as twill prints it goes into the nft script.
    const ip = publicAddress(p, family);
    if (family === 4) {
      // A peer of an IPv6-only network sends nothing over the IPv4 underlay: left out without a word.
      if (p.subnet === undefined && p.publicIP === NO_PUBLIC_IP) continue;
      if (ip === undefined || p.subnet?.family !== 4) {
        skipped.push(`tunnel guard: peer ${p.key} has no IPv4 public IP and subnet (${JSON.stringify(p.publicIP)}); its packets are refused`);
        continue;
      }
      ips.add(ip);
      subnets.add(`${ip} . ${p.subnet.ip.value}-${p.subnet.last.value}`);
      if (p.ipv6Subnet?.family === 6) other.add(`${ip} . ${p.ipv6Subnet.ip.value}-${p.ipv6Subnet.last.value}`);
      continue;
    }
    // An IPv4-only peer sends nothing over the IPv6 underlay: left out without a word.
    if (p.publicIPv6 === undefined && p.ipv6Subnet === undefined) continue;
    if (ip === undefined || p.ipv6Subnet?.family !== 6) {
      skipped.push(`tunnel guard: peer ${p.key} has no valid PublicIPv6 and IPv6 subnet (${JSON.stringify(p.publicIPv6 ?? null)}); its packets over IPv6 are refused`);
      continue;
    }
    ips.add(ip);
    subnets.add(`${ip} . ${p.ipv6Subnet.ip.value}-${p.ipv6Subnet.last.value}`);
    if (p.subnet?.family === 4) other.add(`${ip} . ${p.subnet.ip.value}-${p.subnet.last.value}`);
  }
  const counters = sorted.flatMap((i) => [
    counterName(i.kind, 'unknown_source'),
    ...(i.innerCheckedByEngine ? [] : [counterName(i.kind, 'spoofed_source')]),
  ]);
  return {
    family,
    peers: [...ips].sort(),
    subnets: [...subnets].sort(),
    otherSubnets: [...other].sort(),
    counters: [...new Set(counters)],
    input: sorted.flatMap(intakeRules),
    spoofed: spoofedRules(family),
    intakes: sorted,
    skipped,
  };
}

/** Where the kernel's table differs from the plan, in words (empty: it matches). */
export function guardDifferences(want: GuardState, seen: SeenGuard | undefined): string[] {
  if (!seen) return [`table ${guardTableName(want.family)} is missing`];
  const out: string[] = [];
  for (const c of want.counters) if (!seen.counters.has(c)) out.push(`counter ${c} is missing`);
  const peers = seen.sets.get(PEERS_SET);
  const subnets = seen.sets.get(SUBNETS_SET);
  if (!peers) out.push(`set ${PEERS_SET} is missing`);
  else out.push(...elementDifferences(PEERS_SET, want.peers, peers.elements));
  if (!subnets) out.push(`set ${SUBNETS_SET} is missing`);
  else out.push(...elementDifferences(SUBNETS_SET, want.subnets, subnets.elements));
  const other = seen.sets.get(OTHER_SUBNETS_SET);
  if (!other) out.push(`set ${OTHER_SUBNETS_SET} is missing`);
  else out.push(...elementDifferences(OTHER_SUBNETS_SET, want.otherSubnets, other.elements));
  for (const [name, rules, hook] of [[INPUT_CHAIN, want.input, 'input'], [SPOOFED_CHAIN, want.spoofed, undefined]] as const) {
    const chain = seen.chains.get(name);
    if (!chain) out.push(`chain ${name} is missing`);
    else if (chain.hook !== hook) out.push(`chain ${name} has hook ${chain.hook ?? 'none'}, want ${hook ?? 'none'}`);
    else if (!sameList(chain.comments, rules.map((r) => r.comment))) out.push(`chain ${name} holds other rules than planned`);
  }
  return out;
}

function elementDifferences(set: string, want: readonly string[], have: readonly string[]): string[] {
  const h = new Set(have);
  const w = new Set(want);
  const missing = want.filter((e) => !h.has(e));
  const extra = have.filter((e) => !w.has(e));
  const out: string[] = [];
  if (missing.length) out.push(`set ${set} lacks ${missing.length} element(s), e.g. ${missing[0]}`);
  if (extra.length) out.push(`set ${set} holds ${extra.length} element(s) no lease asks for, e.g. ${extra[0]}`);
  return out;
}

/** The table as it stands once `state` was applied exactly (its counters at zero). */
export function seenAfterApplying(state: GuardState): SeenGuard {
  return {
    counters: new Map(state.counters.map((c) => [c, { packets: 0, bytes: 0 }])),
    sets: new Map([
      [PEERS_SET, { elements: state.peers, packets: new Map(state.peers.map((p) => [p, 0])) }],
      [SUBNETS_SET, { elements: state.subnets, packets: new Map() }],
      [OTHER_SUBNETS_SET, { elements: state.otherSubnets, packets: new Map() }],
    ]),
    chains: new Map<string, { hook?: string; comments: readonly string[] }>([
      [INPUT_CHAIN, { hook: 'input', comments: state.input.map((r) => r.comment) }],
      [SPOOFED_CHAIN, { comments: state.spoofed.map((r) => r.comment) }],
    ]),
  };
}

/**
 * The `nft -f -` script that turns `seen` into `want`, changing only what
 * differs; undefined when nothing does. A chain someone replaced with one
 * of another hook cannot be changed in place: then the table is deleted
 * and created again in the same transaction (its counters start over).
 */
export function guardScript(want: GuardState, seen: SeenGuard | undefined): string | undefined {
  const hookOf = (name: string) => (name === INPUT_CHAIN ? 'input' : undefined);
  if (seen && [...seen.chains].some(([name, c]) => (name === INPUT_CHAIN || name === SPOOFED_CHAIN) && c.hook !== hookOf(name))) {
    return removalScript(want.family) + guardScript(want, undefined)!;
  }
  const T = guardTableName(want.family);
  const f = FAMILY[want.family];
  const lines: string[] = [];
  if (!seen) lines.push(`add table ${T}`);
  const seenCounters = seen?.counters ?? new Map();
  for (const c of want.counters) if (!seenCounters.has(c)) lines.push(`add counter ${T} ${c}`);
  const peers = seen?.sets.get(PEERS_SET);
  const subnets = seen?.sets.get(SUBNETS_SET);
  const other = seen?.sets.get(OTHER_SUBNETS_SET);
  const otherBits = want.family === 6 ? 32 : 128;
  if (!peers) lines.push(`add set ${T} ${PEERS_SET} { type ${f.addrType}; counter; }`);
  // The typeof's raw payload only gives the key its width; each rule says where the inner source is.
  if (!subnets) lines.push(`add set ${T} ${SUBNETS_SET} { typeof ${f.saddr} . @th,96,${f.bits}; flags interval; }`);
  lines.push(...elementChanges(T, PEERS_SET, want.peers, peers?.elements ?? [], (e) => e));
  if (!other) lines.push(`add set ${T} ${OTHER_SUBNETS_SET} { typeof ${f.saddr} . @th,96,${otherBits}; flags interval; }`);
  lines.push(...elementChanges(T, SUBNETS_SET, want.subnets, subnets?.elements ?? [], (e) => subnetElementText(e, f.bits)));
  lines.push(...elementChanges(T, OTHER_SUBNETS_SET, want.otherSubnets, other?.elements ?? [], (e) => subnetElementText(e, otherBits)));
  // The spoofed chain before the input chain: input's rules jump to it.
  lines.push(...chainChanges(T, SPOOFED_CHAIN, undefined, want.spoofed, seen?.chains.get(SPOOFED_CHAIN)));
  lines.push(...chainChanges(T, INPUT_CHAIN, INPUT_HOOK, want.input, seen?.chains.get(INPUT_CHAIN)));
  // Counters no rule names any more (an intake gone); after the chains, which no longer refer to them.
  for (const c of seenCounters.keys()) if (!want.counters.includes(c)) lines.push(`delete counter ${T} ${c}`);
  return lines.length ? lines.join('\n') + '\n' : undefined;
}

/** The script that removes the guard (--tunnel-guard=false, or no backend receives tunnels). */
export function removalScript(family: UnderlayFamily = 4): string {
  return `delete table ${guardTableName(family)}\n`;
}

function elementChanges(T: string, set: string, want: readonly string[], have: readonly string[], text: (e: string) => string): string[] {
  const h = new Set(have);
  const w = new Set(want);
  const add = want.filter((e) => !h.has(e)).map(text);
  const del = have.filter((e) => !w.has(e)).map(text);
  const out: string[] = [];
  // Chunks keep each line a manageable size with thousands of peers.
  for (let i = 0; i < del.length; i += 500) out.push(`delete element ${T} ${set} { ${del.slice(i, i + 500).join(', ')} }`);
  for (let i = 0; i < add.length; i += 500) out.push(`add element ${T} ${set} { ${add.slice(i, i + 500).join(', ')} }`);
  return out;
}

function chainChanges(T: string, name: string, hook: string | undefined, rules: readonly GuardRule[], seen: { comments: readonly string[] } | undefined): string[] {
  if (seen && sameList(seen.comments, rules.map((r) => r.comment))) return [];
  const out = [seen ? `flush chain ${T} ${name}` : hook ? `add chain ${T} ${name} { ${hook} }` : `add chain ${T} ${name}`];
  for (const r of rules) out.push(`add rule ${T} ${name} ${r.text} comment "${r.comment}"`);
  return out;
}

/** `198.18.0.2 . 183763200-183763455` → `198.18.0.2 . 0x0af40100-0x0af401ff` (nft's integer range; 32 hex digits for IPv6). */
function subnetElementText(canonical: string, bits: number): string {
  const m = /^(\S+) \. (\d+)-(\d+)$/.exec(canonical);
  if (!m) throw new Error(`not a subnets element: ${canonical}`);
  const hex = (n: string) => `0x${BigInt(n).toString(16).padStart(bits / 4, '0')}`;
  return `${m[1]} . ${hex(m[2])}-${hex(m[3])}`;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
