/**
 * Applies the tunnel guard (lib/guard/plan.ts) at the end of every
 * reconcile, so start-up, lease events, the repair timer, restarts and
 * migrations all reach it the same way, with the same peers (the
 * assignment's usable peers) and the intakes of every running backend.
 *
 * Each call reads twill's table `ip twill_guard` (and, when a backend
 * receives tunnels over the IPv6 underlay, `ip6 twill_guard`: each family
 * has its own plan, state and counters here), writes only what differs
 * (one nft transaction; never a flush of the table, which would reset the
 * counters), and feeds the drop counters to /metrics.
 *
 * With nftables' change announcements (`watchNft`), a call that plans what
 * it applied last reads only the named counters, not the whole table, while
 * nft announced no change since the last whole read, no spoof counter rose
 * (naming the peer needs the sets' counters) and that read is younger than
 * FULL_READ_MS: at 5000 peers the listing was most of what an idle vxlan
 * node still did at every repair.
 *
 * Spoofed inner sources are logged per peer, at most once a minute each:
 * the `peers` set keeps a packet counter per element that rises only for
 * spoofed packets (plan.ts), so each call compares it with the last value
 * seen and warns, naming the peer, when it rose and the peer's last warning
 * is a minute old. Reads happen at every reconcile (the repair timer makes
 * that at least once per --repair-interval), so a warning comes within one
 * interval of the packets.
 *
 * Failure semantics: never throws and never touches the datapath. A
 * missing nft or a refused script is logged once per distinct message and
 * retried on the next call; the userspace engines check senders themselves
 * meanwhile. `--tunnel-guard=false` removes the table once.
 */
import { type Intake, type UnderlayFamily, intakeLabel } from '../../backends/intake';
import type { Log } from '../observe/logger';
import type { GuardMetrics } from '../observe/metrics';
import { GuardTable, GuardUnavailableError } from '../guard/guard-table';
import { LastResult } from '../last-result';
import type { Unsubscribe } from '../netlink';
import { KernelWatch } from './kernel-watch';
import {
  canonicalIPv6, counterName, type DropReason, GUARD_FAMILIES, type GuardPeer, type GuardState, guardTableName, PEERS_SET, type SeenGuard,
  guardDifferences, guardScript, planGuard, seenAfterApplying,
} from '../guard/plan';

export const SPOOF_LOG_INTERVAL_MS = 60_000;
/**
 * A plan equal to the one applied less than this ago is not checked again:
 * reading a table of 5000 peers takes ~0.2 s, and a burst of lease events
 * would read it on every reconcile. The repair timer still checks it.
 */
const RECHECK_MS = 1000;
/** The whole table is read at least this often, announced changes or not. */
export const FULL_READ_MS = 60_000;
const REASONS: readonly DropReason[] = ['unknown_source', 'spoofed_source'];

export interface GuardControllerOptions {
  readonly enabled: boolean;
  readonly log: Log;
  readonly metrics: GuardMetrics;
  /** The IPv4 table; the IPv6 one uses the same nft (GuardTable.withFamily). */
  readonly table?: GuardTable;
  readonly now?: () => number;
  /** Watches nftables for changes (lib/netlink `watchNftables`); absent: the whole table is read at every check. */
  readonly watchNft?: (onChange: (how: 'changed' | 'lost' | 'closed') => void) => Unsubscribe;
}

/** What the controller keeps per table. */
class FamilyState {
  lastError = '';
  removed = false;
  installed = false;
  /** The plan written (or found in place) last. */
  applied?: GuardState;
  /** planGuard's last answer: the same peers and intakes plan the same table. */
  readonly plan = new LastResult<GuardState | undefined>();
  /** When the table was last read and made to match `applied`. */
  checkedAt = -Infinity;
  /** nftables' announcements since the last whole read: while there are none, that read still stands. */
  readonly announced: KernelWatch;
  /** The spoof counters at that read: a rise since means a peer to name, which only a whole read can. */
  spoofedAtRead = new Map<string, number>();
  /** Per peer public IP: the spoof count seen last, and when it was last logged. */
  readonly spoofs = new Map<string, { count: number; loggedAt?: number; unlogged: number }>();
  constructor(readonly family: UnderlayFamily, readonly table: GuardTable, now: () => number) {
    this.announced = new KernelWatch(FULL_READ_MS, now);
  }
}

export class GuardController {
  private readonly now: () => number;
  private readonly families: FamilyState[];
  private reportedSkips = new Set<string>();
  private nftWatch?: { stop?: Unsubscribe };

  constructor(private readonly o: GuardControllerOptions) {
    const table = o.table ?? new GuardTable();
    this.now = o.now ?? Date.now;
    this.families = GUARD_FAMILIES.map((f) => new FamilyState(f, table.withFamily(f), this.now));
  }

  /**
   * Makes each family's table match these peers and intakes; never throws.
   * With `onlyToAdmit` (before the backends program a reconcile's routes) it
   * writes only when a peer is missing from what was applied last (then the
   * whole plan, with the intakes the backends' previous plans stated); the
   * call after the routes adds what a backend's new plan receives.
   */
  async apply(peers: readonly GuardPeer[], intakes: readonly Intake[], opts: { onlyToAdmit?: boolean } = {}): Promise<void> {
    if (this.o.enabled && intakes.length > 0) this.watchNft();
    const skipped: string[] = [];
    let active = true;
    // Intakes are rebuilt by every backend plan; their content is what counts.
    const intakesKey = JSON.stringify(intakes);
    for (const f of this.families) {
      const ok = await this.applyFamily(f, peers, intakes, intakesKey, opts, skipped);
      if (ok === false) active = false;
    }
    if (!opts.onlyToAdmit) this.reportSkips(skipped);
    // Active: every table wanted is in place (and at least the IPv4 one or the IPv6 one is wanted).
    this.o.metrics.setTunnelGuardActive(active && this.families.some((f) => f.installed));
  }

  /** One family's table; false when it is wanted but could not be put in place, undefined when not wanted. */
  private async applyFamily(
    f: FamilyState, peers: readonly GuardPeer[], intakes: readonly Intake[], intakesKey: string, opts: { onlyToAdmit?: boolean }, skipped: string[],
  ): Promise<boolean | undefined> {
    const table = guardTableName(f.family);
    try {
      if (opts.onlyToAdmit && (!this.o.enabled || intakes.length === 0)) return f.installed || undefined;
      if (!this.o.enabled) return await this.removeOnce(f, '--tunnel-guard=false');
      const want = f.plan.get([peers, intakesKey], () => planGuard(peers, intakes, f.family));
      if (!want) return await this.removeOnce(f, f.family === 6 ? 'no backend running here receives tunnel traffic over IPv6' : 'no backend running here receives tunnel traffic');
      skipped.push(...want.skipped);
      if (opts.onlyToAdmit && f.applied && admits(f.applied, want)) return true;
      if (opts.onlyToAdmit && f.applied && f.installed && await this.admitOnto(f, want)) return true;
      if (f.applied && this.now() - f.checkedAt < RECHECK_MS && samePlan(f.applied, want)) return true;
      if (f.applied && f.installed && samePlan(f.applied, want) && f.announced.unchanged([])) {
        const counters = await f.table.readCounters();
        if (counters && !spoofRose(f.spoofedAtRead, want, counters)) {
          this.countDrops(f, want, counters);
          f.checkedAt = this.now();
          f.lastError = '';
          return true;
        }
      }
      f.removed = false;
      const mark = f.announced.mark();
      const seen = await f.table.read();
      const script = guardScript(want, seen);
      if (script) {
        // Element changes follow the leases; anything else changed behind twilld's back.
        const repairs = seen && f.installed ? guardDifferences(want, seen).filter((d) => !/^set (peers|subnets|other_subnets) /.test(d)) : [];
        await f.table.write(script);
        if (repairs.length) this.o.log.warn(`tunnel guard: put back what someone changed in ${table}`, { changes: repairs.join('; ') });
      }
      if (!f.installed) {
        this.o.log.info(`tunnel guard ${seen ? 'adopted' : 'installed'}${f.family === 6 ? ' for the IPv6 underlay' : ''}: tunnel packets only from peers, inner sources only from their subnets`, {
          table, peers: want.peers.length, intakes: want.intakes.map(intakeLabel).join(', '),
        });
      }
      f.installed = true;
      f.applied = want;
      f.checkedAt = this.now();
      f.announced.verify(mark, []);
      f.spoofedAtRead = spoofCounts(want, seen?.counters);
      this.count(f, want, seen, peers);
      f.lastError = '';
      return true;
    } catch (err) {
      f.announced.forget();
      const message = (err as Error).message;
      if (message !== f.lastError) this.o.log.warn(`tunnel guard (${table}): ${message}; tunnel traffic is not filtered by nftables until this is fixed (retrying)`);
      f.lastError = message;
      return false;
    }
  }

  /**
   * Admits new peers with the difference from what was applied last, without
   * reading the table first: on the way from a lease to its routes, a read
   * is a second nft run (and ~0.2 s of parsing at 5000 peers). If the table
   * changed behind twilld's back and nft refuses, false: the caller reads it
   * and writes the whole plan. Other drift is found by the next full check,
   * which this leaves due (checkedAt is not moved).
   */
  private async admitOnto(f: FamilyState, want: GuardState): Promise<boolean> {
    const script = guardScript(want, seenAfterApplying(f.applied!));
    try {
      if (script) await f.table.write(script);
    } catch {
      return false;
    }
    f.applied = want;
    return true;
  }

  private async removeOnce(f: FamilyState, why: string): Promise<undefined> {
    f.installed = false;
    f.applied = undefined;
    if (f.removed) return undefined;
    let removed: boolean;
    try {
      removed = await f.table.remove();
    } catch (err) {
      // Without nft there is no table of ours to remove, and nothing to warn about when none is wanted.
      if (!(err instanceof GuardUnavailableError)) throw err;
      removed = false;
    }
    if (removed) this.o.log.info(`removed twill's tunnel guard table ${guardTableName(f.family)} (${why})`);
    f.removed = true;
    f.lastError = '';
    return undefined;
  }

  /** Releases the nftables watch. */
  stop(): void {
    this.nftWatch?.stop?.();
    for (const f of this.families) f.announced.stopped();
  }

  /** Starts watching nftables' announcements once (a failure is logged, and every check then reads the whole table). */
  private watchNft(): void {
    if (this.nftWatch || !this.o.watchNft) return;
    const nftWatch: { stop?: Unsubscribe } = {};
    this.nftWatch = nftWatch;
    try {
      nftWatch.stop = this.o.watchNft((how) => {
        for (const f of this.families) {
          f.announced.changed();
          if (how === 'closed') f.announced.stopped();
        }
      });
      for (const f of this.families) f.announced.started();
    } catch (err) {
      this.o.log.warn('cannot watch nftables for changes; the tunnel guard reads its whole table at every check', { error: (err as Error).message });
    }
  }

  /** Drop counters to /metrics; a warning per peer whose spoofed packets rose, at most once a minute each. */
  private count(f: FamilyState, want: GuardState, seen: SeenGuard | undefined, peers: readonly GuardPeer[]): void {
    this.countDrops(f, want, seen?.counters);
    const perPeer = seen?.sets.get(PEERS_SET)?.packets ?? new Map<string, number>();
    const now = this.now();
    for (const [ip, count] of perPeer) {
      const last = f.spoofs.get(ip) ?? { count: 0, unlogged: 0 };
      // Lower than before: the element was removed and added again, and counts from 0.
      const rose = count >= last.count ? count - last.count : count;
      const next = { ...last, count, unlogged: last.unlogged + rose };
      if (next.unlogged > 0 && (last.loggedAt === undefined || now - last.loggedAt >= SPOOF_LOG_INTERVAL_MS)) {
        const holders = peers.filter((p) => (f.family === 6 ? canonicalIPv6(p.publicIPv6) === ip : p.publicIP === ip))
          .map((p) => (f.family === 6 ? p.ipv6Subnet : p.subnet)?.toString()).filter((s) => s !== undefined).join(', ') || 'no lease now';
        this.o.log.warn(`tunnel guard: dropped ${next.unlogged} packet(s) from peer ${ip} whose inner source lies outside its subnet (${holders})`, {
          peer: ip, subnet: holders,
        });
        next.loggedAt = now;
        next.unlogged = 0;
      }
      f.spoofs.set(ip, next);
    }
    for (const ip of [...f.spoofs.keys()]) if (!perPeer.has(ip)) f.spoofs.delete(ip);
  }

  private countDrops(f: FamilyState, want: GuardState, counters: SeenGuard['counters'] | undefined): void {
    for (const kind of new Set(want.intakes.map((i) => i.kind))) {
      for (const reason of REASONS) {
        const name = counterName(kind, reason);
        // No such counter where the engine checks inner sources: its drops are in twill_datapath_drops_total.
        if (want.counters.includes(name)) this.o.metrics.setUnderlayDrops(reason, kind, counters?.get(name)?.packets ?? 0, f.family);
      }
    }
  }

  private reportSkips(skipped: readonly string[]): void {
    const now = new Set(skipped);
    for (const s of now) if (!this.reportedSkips.has(s)) this.o.log.warn(s);
    this.reportedSkips = now;
  }
}

/** The plan's spoof counters as read. */
function spoofCounts(want: GuardState, counters: SeenGuard['counters'] | undefined): Map<string, number> {
  const kinds = new Set(want.intakes.map((i) => i.kind));
  const names = [...kinds].map((k) => counterName(k, 'spoofed_source')).filter((n) => want.counters.includes(n));
  return new Map(names.map((n) => [n, counters?.get(n)?.packets ?? 0]));
}

/** Whether a spoof counter rose since `before` (a peer sent spoofed sources and is to be named). */
function spoofRose(before: ReadonlyMap<string, number>, want: GuardState, counters: SeenGuard['counters']): boolean {
  for (const [name, packets] of spoofCounts(want, counters)) if (packets !== (before.get(name) ?? 0)) return true;
  return false;
}

/** Whether the table as applied already takes every peer and subnet of `want`. */
function admits(applied: GuardState, want: GuardState): boolean {
  if (applied === want) return true;
  const peers = new Set(applied.peers);
  const subnets = new Set([...applied.subnets, ...applied.otherSubnets]);
  return want.peers.every((p) => peers.has(p)) && [...want.subnets, ...want.otherSubnets].every((s) => subnets.has(s));
}

function samePlan(a: GuardState, b: GuardState): boolean {
  if (a === b) return true;
  const same = (x: readonly string[], y: readonly string[]) => x.length === y.length && x.every((v, i) => v === y[i]);
  return same(a.peers, b.peers) && same(a.subnets, b.subnets) && same(a.otherSubnets, b.otherSubnets) && same(a.input.map((r) => r.text), b.input.map((r) => r.text));
}
