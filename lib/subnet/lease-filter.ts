/**
 * Which leases the agents accept: the one rule, used by the agents'
 * LeaseWatcher and by everything that says what the agents will make of
 * etcd (`twill status`, `twill diagnose`, `twill migrate`).
 *
 * An entry is accepted when `leaseFromRaw` takes it (a lease key, a
 * decodable value, a subnet inside the network and of its size) and none of
 * its subnets is held by an older accepted entry (lower create revision;
 * equal ones by key): two keys can claim one subnet (a dual-stack key and a
 * plain one), and the one that was there first keeps it. Every other entry
 * is skipped, with a reason that names the fault.
 *
 * `filterLeases` decides for a whole listing. `LeaseTable` decides the same
 * incrementally, for a watch: a change re-decides only the entries that
 * share a subnet with it, directly or through others.
 */
import type { NetworkConfig } from '../config';
import { heldSubnets, type Lease, type LeaseEvent } from './lease';
import type { RawKV } from './etcd-registry';
import { leaseFromRaw } from './lease-validation';

export interface SkippedLease {
  readonly raw: RawKV;
  readonly reason: string;
}

export interface FilteredLeases {
  /** In the order of the input. */
  readonly accepted: Lease[];
  /** In the order of the input. */
  readonly skipped: SkippedLease[];
}

/** The warning the agents log for a skipped entry. */
export function skipWarning(skipped: SkippedLease): string {
  return `skipping lease ${JSON.stringify(skipped.raw.key.slice(0, 80))}: ${skipped.reason}`;
}

/** The other nodes: every accepted lease but this node's own. */
export function peersOf(leases: Iterable<Lease>, ownKey: string | undefined): Lease[] {
  return [...leases].filter((l) => l.key !== ownKey);
}

/** Which entries of one listing the agents accept, and why they skip the others. Pure. */
export function filterLeases(kvs: readonly RawKV[], config: NetworkConfig): FilteredLeases {
  const entries = kvs.map((raw) => decode(raw, config));
  const losers = resolveClaims(entries);
  const accepted: Lease[] = [];
  const skipped: SkippedLease[] = [];
  for (const e of entries) {
    const reason = e.lease ? losers.get(e.raw.key) : e.error;
    if (reason === undefined && e.lease) accepted.push(e.lease);
    else skipped.push({ raw: e.raw, reason: reason ?? 'not a lease' });
  }
  return { accepted, skipped };
}

export type LeaseChange =
  | { readonly type: 'put'; readonly raw: RawKV }
  | { readonly type: 'delete'; readonly key: string };

/**
 * The entries under `<prefix>/subnets/` as a watch sees them, and which of
 * them the agents accept: after every `apply`, `leases()` equals what
 * `filterLeases` would accept of all the entries. Pure (no I/O).
 */
export class LeaseTable {
  private readonly entries = new Map<string, Decoded>();
  /** subnet (IPNet string) → keys of decodable entries that claim it */
  private readonly claimants = new Map<string, Set<string>>();
  private readonly accepted = new Map<string, Lease>();

  constructor(private readonly config: NetworkConfig) {}

  /** Every accepted lease, by key. */
  leases(): ReadonlyMap<string, Lease> {
    return this.accepted;
  }

  raw(key: string): RawKV | undefined {
    return this.entries.get(key)?.raw;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * Applies a batch of changes. `events` is the change of the accepted set;
   * `skipped` lists every entry the batch left skipped among those it could
   * affect (the changed ones and those sharing a subnet with them).
   */
  apply(changes: readonly LeaseChange[]): { events: LeaseEvent[]; skipped: SkippedLease[] } {
    const events: LeaseEvent[] = [];
    const skipped: SkippedLease[] = [];
    // One change at a time, not the batch's net result: a lease created and
    // deleted in one watch response still reads as added, then removed
    // (the subnet manager learns from that its own lease was deleted).
    for (const change of changes) this.applyOne(change, events, skipped);
    return { events, skipped };
  }

  private applyOne(change: LeaseChange, events: LeaseEvent[], skipped: SkippedLease[]): void {
    const key = change.type === 'put' ? change.raw.key : change.key;
    const known = this.entries.get(key);
    if (change.type === 'put' && known && known.raw.modRevision === change.raw.modRevision && known.raw.value === change.raw.value) return;
    if (!known && change.type === 'delete') return;
    const seeds = new Set<string>([key]);
    if (known) this.unindex(known, seeds);
    if (change.type === 'put') {
      const entry = decode(change.raw, this.config);
      this.entries.set(key, entry);
      this.index(entry);
    } else {
      this.entries.delete(key);
    }

    const group = this.connected(seeds);
    const members = [...group].map((k) => this.entries.get(k)).filter((e): e is Decoded => e !== undefined);
    const losers = resolveClaims(members);
    for (const member of group) {
      const entry = this.entries.get(member);
      const previous = this.accepted.get(member);
      const reason = entry ? (entry.lease ? losers.get(member) : entry.error) : undefined;
      const lease = entry && reason === undefined ? entry.lease : undefined;
      if (entry && !lease) skipped.push({ raw: entry.raw, reason: reason ?? 'not a lease' });
      if (lease) {
        this.accepted.set(member, lease);
        if (!previous) events.push({ type: 'added', lease });
        else if (previous.modRevision !== lease.modRevision) events.push({ type: 'changed', lease, previous });
      } else if (previous) {
        this.accepted.delete(member);
        events.push({ type: 'removed', lease: previous });
      }
    }
  }

  private index(entry: Decoded): void {
    for (const s of entry.subnets) {
      let keys = this.claimants.get(s);
      if (!keys) this.claimants.set(s, (keys = new Set()));
      keys.add(entry.raw.key);
    }
  }

  /** Forgets the entry's claims; whoever else claimed its subnets must be decided again. */
  private unindex(entry: Decoded, seeds: Set<string>): void {
    for (const s of entry.subnets) {
      const keys = this.claimants.get(s);
      if (!keys) continue;
      keys.delete(entry.raw.key);
      if (keys.size === 0) this.claimants.delete(s);
      else for (const k of keys) seeds.add(k);
    }
  }

  /** The seeds and every entry linked to them through shared subnets: the only ones a change can affect. */
  private connected(seeds: ReadonlySet<string>): Set<string> {
    const group = new Set(seeds);
    const queue = [...seeds];
    while (queue.length > 0) {
      const entry = this.entries.get(queue.pop() as string);
      if (!entry) continue;
      for (const s of entry.subnets) {
        for (const k of this.claimants.get(s) ?? []) {
          if (group.has(k)) continue;
          group.add(k);
          queue.push(k);
        }
      }
    }
    return group;
  }
}

interface Decoded {
  readonly raw: RawKV;
  readonly lease?: Lease;
  /** Why `leaseFromRaw` refused it. */
  readonly error?: string;
  /** The subnets it claims: none unless it decodes. */
  readonly subnets: readonly string[];
}

function decode(raw: RawKV, config: NetworkConfig): Decoded {
  try {
    const lease = leaseFromRaw(raw, config);
    // Only the subnets it holds: every IPv6-only lease has the same empty IPv4 part.
    const subnets = heldSubnets(lease).map((s) => s.toString());
    return { raw, lease, subnets };
  } catch (err) {
    // Whatever leaseFromRaw throws on, the entry is someone else's data: skipped, not fatal.
    return { raw, error: err instanceof Error ? err.message : String(err), subnets: [] };
  }
}

/**
 * Among decodable entries, oldest first, each takes its subnets unless an
 * older one holds one of them. Returns the losers, key → reason.
 */
function resolveClaims(entries: readonly Decoded[]): Map<string, string> {
  const byAge = entries.filter((e) => e.lease).sort((a, b) =>
    a.raw.createRevision < b.raw.createRevision ? -1 : a.raw.createRevision > b.raw.createRevision ? 1 : a.raw.key < b.raw.key ? -1 : a.raw.key > b.raw.key ? 1 : 0);
  const holder = new Map<string, string>();
  const losers = new Map<string, string>();
  for (const e of byAge) {
    const older = e.subnets.map((s) => holder.get(s)).find((h) => h !== undefined);
    if (older !== undefined) {
      losers.set(e.raw.key, `its subnet is already claimed by the older lease ${JSON.stringify(older)}`);
      continue;
    }
    for (const s of e.subnets) holder.set(s, e.raw.key);
  }
  return losers;
}
