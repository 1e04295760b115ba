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
 * The diff (`guardScript`) changes only what differs, in one `nft -f -`
 * transaction: elements are added and deleted one by one, a chain whose
 * rules differ is flushed and refilled, and the table itself is never
 * flushed, so the named counters and the per-peer counters keep counting
 * across updates. Rules are recognised by their comment.
 */
import type { IPNet } from '../ip';
import type { Lease } from '../subnet';
import { carriesIPv4 } from '../subnet/lease';
import { type Intake, type IntakeKind, intakeLabel } from '../../backends/intake';
import { unusablePeer } from '../../backends/assignment';

export const GUARD_TABLE = 'twill_guard';
const T = `ip ${GUARD_TABLE}`;
export const INPUT_CHAIN = 'input';
export const SPOOFED_CHAIN = 'spoofed';
export const PEERS_SET = 'peers';
export const SUBNETS_SET = 'subnets';
/** Before the default filter priority, so no accept elsewhere lets a packet through first. */
const INPUT_HOOK = 'type filter hook input priority filter - 10; policy accept;';

export type DropReason = 'unknown_source' | 'spoofed_source';

/** A peer as the guard sees it: where its packets come from and which inner sources it may send. */
export interface GuardPeer {
  /** Its lease key, for the log. */
  readonly key: string;
  readonly publicIP: string;
  readonly subnet: IPNet;
}

export interface GuardRule {
  /** Identifies the rule in the kernel's listing. */
  readonly comment: string;
  /** The rule without its comment. */
  readonly text: string;
}

/** What the table should hold. */
export interface GuardState {
  /** Public IPs, sorted, each once. */
  readonly peers: readonly string[];
  /** `subnets` elements in canonical form: `198.18.0.2 . 183763200-183763455`. */
  readonly subnets: readonly string[];
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
    // The guard filters IPv4 tunnels; an IPv6-only peer sends over IPv6 (not filtered yet).
    if (l.key === own.key || unusablePeer(l, own) || !carriesIPv4(l)) continue;
    out.push({ key: l.key, publicIP: l.attrs.publicIP, subnet: l.subnet });
  }
  return out;
}

export function counterName(kind: IntakeKind, reason: DropReason): string {
  return `${reason === 'unknown_source' ? 'unknown' : 'spoofed'}_${kind}`;
}

/** The rules for one intake: its match, then the two drops. */
function intakeRules(i: Intake): GuardRule[] {
  const match = i.port !== undefined ? `udp dport ${i.port}` : 'ip protocol 4';
  const label = intakeLabel(i);
  const innerSource = (i.inner + 12) * 8;
  const ipv4Only = i.ethertypeAt !== undefined ? ` @th,${i.ethertypeAt * 8},16 0x0800` : '';
  const unknown = { comment: `${label} unknown source`, text: `${match} ip saddr != @${PEERS_SET} counter name "${counterName(i.kind, 'unknown_source')}" drop` };
  if (i.innerCheckedByEngine) return [unknown];
  return [
    unknown,
    {
      comment: `${label} spoofed source`,
      text: `${match}${ipv4Only} ip saddr . @th,${innerSource},32 != @${SUBNETS_SET} counter name "${counterName(i.kind, 'spoofed_source')}" goto ${SPOOFED_CHAIN}`,
    },
  ];
}

const SPOOFED_RULES: readonly GuardRule[] = [
  { comment: 'count per peer', text: `ip saddr @${PEERS_SET}` },
  { comment: 'drop spoofed', text: 'drop' },
];

/**
 * The wanted table for these peers and intakes; undefined when no running
 * backend receives encapsulated traffic (host-gw, alloc): nothing to guard.
 */
export function planGuard(peers: readonly GuardPeer[], intakes: readonly Intake[]): GuardState | undefined {
  const unique = new Map(intakes.map((i) => [intakeLabel(i), i]));
  if (unique.size === 0) return undefined;
  const sorted = [...unique.values()].sort((a, b) => intakeLabel(a).localeCompare(intakeLabel(b)));
  const skipped: string[] = [];
  const ips = new Set<string>();
  const subnets = new Set<string>();
  for (const p of peers) {
    // A lease's PublicIP comes from etcd: only a plain dotted quad goes into the nft script.
    if (!IPV4.test(p.publicIP) || p.subnet.family !== 4) {
      skipped.push(`tunnel guard: peer ${p.key} has no IPv4 public IP and subnet (${JSON.stringify(p.publicIP)}); its packets are refused`);
      continue;
    }
    ips.add(p.publicIP);
    subnets.add(`${p.publicIP} . ${p.subnet.ip.value}-${p.subnet.last.value}`);
  }
  const counters = sorted.flatMap((i) => [
    counterName(i.kind, 'unknown_source'),
    ...(i.innerCheckedByEngine ? [] : [counterName(i.kind, 'spoofed_source')]),
  ]);
  return {
    peers: [...ips].sort(),
    subnets: [...subnets].sort(),
    counters: [...new Set(counters)],
    input: sorted.flatMap(intakeRules),
    spoofed: SPOOFED_RULES,
    intakes: sorted,
    skipped,
  };
}

/** Where the kernel's table differs from the plan, in words (empty: it matches). */
export function guardDifferences(want: GuardState, seen: SeenGuard | undefined): string[] {
  if (!seen) return [`table ${T} is missing`];
  const out: string[] = [];
  for (const c of want.counters) if (!seen.counters.has(c)) out.push(`counter ${c} is missing`);
  const peers = seen.sets.get(PEERS_SET);
  const subnets = seen.sets.get(SUBNETS_SET);
  if (!peers) out.push(`set ${PEERS_SET} is missing`);
  else out.push(...elementDifferences(PEERS_SET, want.peers, peers.elements));
  if (!subnets) out.push(`set ${SUBNETS_SET} is missing`);
  else out.push(...elementDifferences(SUBNETS_SET, want.subnets, subnets.elements));
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

/**
 * The `nft -f -` script that turns `seen` into `want`, changing only what
 * differs; undefined when nothing does. A chain someone replaced with one
 * of another hook cannot be changed in place: then the table is deleted
 * and created again in the same transaction (its counters start over).
 */
export function guardScript(want: GuardState, seen: SeenGuard | undefined): string | undefined {
  const hookOf = (name: string) => (name === INPUT_CHAIN ? 'input' : undefined);
  if (seen && [...seen.chains].some(([name, c]) => (name === INPUT_CHAIN || name === SPOOFED_CHAIN) && c.hook !== hookOf(name))) {
    return removalScript() + guardScript(want, undefined)!;
  }
  const lines: string[] = [];
  if (!seen) lines.push(`add table ${T}`);
  const seenCounters = seen?.counters ?? new Map();
  for (const c of want.counters) if (!seenCounters.has(c)) lines.push(`add counter ${T} ${c}`);
  const peers = seen?.sets.get(PEERS_SET);
  const subnets = seen?.sets.get(SUBNETS_SET);
  if (!peers) lines.push(`add set ${T} ${PEERS_SET} { type ipv4_addr; counter; }`);
  if (!subnets) lines.push(`add set ${T} ${SUBNETS_SET} { typeof ip saddr . @th,96,32; flags interval; }`);
  lines.push(...elementChanges(PEERS_SET, want.peers, peers?.elements ?? [], (e) => e));
  lines.push(...elementChanges(SUBNETS_SET, want.subnets, subnets?.elements ?? [], subnetElementText));
  // The spoofed chain before the input chain: input's rules jump to it.
  lines.push(...chainChanges(SPOOFED_CHAIN, undefined, want.spoofed, seen?.chains.get(SPOOFED_CHAIN)));
  lines.push(...chainChanges(INPUT_CHAIN, INPUT_HOOK, want.input, seen?.chains.get(INPUT_CHAIN)));
  // Counters no rule names any more (an intake gone); after the chains, which no longer refer to them.
  for (const c of seenCounters.keys()) if (!want.counters.includes(c)) lines.push(`delete counter ${T} ${c}`);
  return lines.length ? lines.join('\n') + '\n' : undefined;
}

/** The script that removes the guard (--tunnel-guard=false, or no backend receives tunnels). */
export function removalScript(): string {
  return `delete table ${T}\n`;
}

function elementChanges(set: string, want: readonly string[], have: readonly string[], text: (e: string) => string): string[] {
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

function chainChanges(name: string, hook: string | undefined, rules: readonly GuardRule[], seen: { comments: readonly string[] } | undefined): string[] {
  if (seen && sameList(seen.comments, rules.map((r) => r.comment))) return [];
  const out = [seen ? `flush chain ${T} ${name}` : hook ? `add chain ${T} ${name} { ${hook} }` : `add chain ${T} ${name}`];
  for (const r of rules) out.push(`add rule ${T} ${name} ${r.text} comment "${r.comment}"`);
  return out;
}

/** `198.18.0.2 . 183763200-183763455` → `198.18.0.2 . 0x0af40100-0x0af401ff` (nft's integer range). */
function subnetElementText(canonical: string): string {
  const m = /^(\S+) \. (\d+)-(\d+)$/.exec(canonical);
  if (!m) throw new Error(`not a subnets element: ${canonical}`);
  const hex = (n: string) => `0x${BigInt(n).toString(16).padStart(8, '0')}`;
  return `${m[1]} . ${hex(m[2])}-${hex(m[3])}`;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
