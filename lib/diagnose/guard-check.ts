/**
 * Whether the tunnel guard is in force on this node (issue 15): the table
 * `ip twill_guard` compared with the plan twilld would write — the same
 * peers (lib/guard/plan.ts `guardPeers`, the agent's lease filter) and the
 * intakes the backends' plans state (plan-check.ts reads them) — and what
 * it has dropped since it was installed.
 *
 * Findings (topic `guard`): OK when the table matches, with the drop
 * counts; FAIL when it is missing or differs while --tunnel-guard is on (a
 * rogue host can reach the pods); WARN when --tunnel-guard=false, and per
 * peer that has sent spoofed inner sources.
 */
import { carriesIPv4 } from '../subnet/lease';
import type { Intake } from '../../backends/intake';
import { intakeLabel } from '../../backends/intake';
import type { Lease } from '../subnet';
import { GuardTable, GuardUnavailableError } from '../guard/guard-table';
import { counterName, guardDifferences, guardPeers, PEERS_SET, planGuard, type DropReason } from '../guard/plan';
import { Findings, TWILLD_REPAIRS } from './findings';

const TOPIC = 'guard';

export interface GuardCheck {
  /** As twilld's --tunnel-guard. */
  readonly enabled: boolean;
  readonly own: Lease;
  readonly leases: readonly Lease[];
  /** What the running backends receive, from their plans. */
  readonly intakes: readonly Intake[];
  readonly table?: GuardTable;
}

export async function checkGuard(c: GuardCheck, out: Findings): Promise<void> {
  const table = c.table ?? new GuardTable();
  if (!c.enabled) {
    out.warn(TOPIC, 'tunnel packets are not filtered (--tunnel-guard=false)',
      'any host that reaches this node\'s tunnel ports (or sends IP protocol 4) can put packets into the pod network; run twilld without --tunnel-guard=false');
    return;
  }
  const want = planGuard(guardPeers(c.own, c.leases), c.intakes);
  if (!want) {
    out.ok(TOPIC, 'no backend here receives tunnel traffic: nothing to filter');
    return;
  }
  const what = want.intakes.map(intakeLabel).join(', ');
  let seen;
  try {
    seen = await table.read();
  } catch (err) {
    const advice = err instanceof GuardUnavailableError ? 'install nftables (apt-get install nftables) on the node; twilld installs the table on its next reconcile' : TWILLD_REPAIRS;
    out.fail(TOPIC, `cannot read the tunnel guard: ${(err as Error).message}`, advice);
    return;
  }
  if (!seen) {
    out.fail(TOPIC, `tunnel guard table ip twill_guard is missing: ${what} accept packets from any host`, TWILLD_REPAIRS);
    return;
  }
  const differences = guardDifferences(want, seen);
  for (const d of differences.slice(0, 5)) out.fail(TOPIC, `tunnel guard differs from the plan: ${d}`, TWILLD_REPAIRS);
  if (differences.length > 5) out.fail(TOPIC, `tunnel guard: ${differences.length - 5} more difference(s)`, TWILLD_REPAIRS);
  const drops = (reason: DropReason) => {
    const kinds = [...new Set(want.intakes.map((i) => i.kind))].filter((k) => want.counters.includes(counterName(k, reason)));
    const per = kinds.map((k) => [k, seen!.counters.get(counterName(k, reason))?.packets ?? 0] as const);
    const total = per.reduce((s, [, n]) => s + n, 0);
    return `${total}${total ? ` (${per.filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`;
  };
  const unfiltered = c.leases.filter((l) => l.key !== c.own.key && !carriesIPv4(l)).length;
  if (!differences.length) {
    out.ok(TOPIC, `tunnel guard active: ${what} take packets only from ${want.peers.length} peer(s), inner sources only from their subnets; ` +
      `dropped so far: ${drops('unknown_source')} from hosts without a lease, ${drops('spoofed_source')} with a spoofed inner source` +
      (unfiltered ? `; ${unfiltered} IPv6-only peer(s) tunnel over IPv6, which the guard does not filter yet` : ''));
  }
  for (const [ip, n] of seen.sets.get(PEERS_SET)?.packets ?? []) {
    if (n === 0) continue;
    const subnets = c.leases.filter((l) => l.attrs.publicIP === ip).map((l) => l.subnet.toString()).join(', ');
    out.warn(TOPIC, `peer ${ip} (${subnets || 'no lease'}) sent ${n} packet(s) with an inner source outside its subnet (dropped)`,
      'find out what on that node sends from addresses it does not own (a pod with a forged address, a misrouted host)');
  }
}
