/**
 * Where each node stands in a migration, from the leases the agents accept:
 * what it terminates, which peers it still reaches over another backend
 * (`chooseBackend`, as the agents choose), and why it has not converged. Pure.
 */
import { heldSubnets, leaseLabel, underlayAddress } from '../../subnet/lease';
import type { NetworkConfig } from '../../config';
import { filterLeases, peersOf, type Lease, type RawKV } from '../../subnet';
import { chooseBackend, terminatedBy } from '../../../backends/assignment';
import type { MigrationPlan } from './plan';

export interface NodeState {
  readonly key: string;
  /** `10.244.1.0/24 (198.18.0.1)` */
  readonly name: string;
  readonly terminates: readonly string[];
  /** Peers reached over a backend other than the target: backend (or `none`) → peer subnets. */
  readonly notOnTarget: ReadonlyMap<string, readonly string[]>;
  readonly peers: number;
  /** Why the node has not converged; empty when it has. */
  readonly pending: readonly string[];
}

/** What each valid lease terminates against the plan, in subnet order. */
export function assessNodes(leases: readonly Lease[], plan: Pick<MigrationPlan, 'target' | 'order' | 'wanted'>): NodeState[] {
  // By the subnet that names each lease (the IPv6 one of an IPv6-only lease).
  const named = (l: Lease) => heldSubnets(l)[0]?.ip.value ?? 0n;
  const sorted = [...leases].sort((a, b) => (named(a) < named(b) ? -1 : named(a) > named(b) ? 1 : 0));
  return sorted.map((lease) => {
    const terminates = terminatedBy(lease.attrs);
    const notOnTarget = new Map<string, string[]>();
    for (const peer of peersOf(sorted, lease.key)) {
      const over = chooseBackend(plan.order, terminates, terminatedBy(peer.attrs)) ?? 'none';
      if (over === plan.target) continue;
      notOnTarget.set(over, [...(notOnTarget.get(over) ?? []), leaseLabel(peer)]);
    }
    const pending: string[] = [];
    const primary = terminates[0];
    if (!terminates.includes(plan.target)) pending.push(`does not terminate ${plan.target} yet`);
    else if (primary !== plan.target) pending.push(`its primary backend is ${primary}, not ${plan.target}`);
    const missing = plan.wanted.filter((t) => t !== plan.target && !terminates.includes(t));
    if (missing.length > 0) pending.push(`does not terminate the fallback ${missing.join(', ')} yet`);
    const extra = terminates.filter((t) => !plan.wanted.includes(t));
    // Dropping the old backend comes after taking up the target: said once that is done.
    if (extra.length > 0 && terminates.includes(plan.target)) pending.push(`still terminates ${extra.join(', ')}`);
    return {
      key: lease.key,
      name: `${leaseLabel(lease)} (${underlayAddress(lease.attrs) ?? lease.attrs.publicIP})`,
      terminates,
      notOnTarget,
      peers: sorted.length - 1,
      pending,
    };
  });
}

/** One node's state as a line (without the timestamp); a change of this text is a change of state. */
export function nodeLine(node: NodeState, target: string): string {
  const peers = node.notOnTarget.size === 0
    ? (node.peers === 0 ? 'no peers' : `all ${node.peers} peer${node.peers === 1 ? '' : 's'} over ${target}`)
    : [...node.notOnTarget].map(([over, subnets]) => (over === 'none'
      ? `NO backend in common with ${list(subnets)}`
      : `still over ${over} to ${list(subnets)}`)).join('; ');
  const state = node.pending.length === 0 ? 'converged' : node.pending.join(', ');
  return `${node.name}: terminates ${node.terminates.join(', ')}; ${peers}; ${state}`;
}

function list(items: readonly string[]): string {
  const MAX = 6;
  return items.length > MAX ? `${items.slice(0, MAX).join(', ')} and ${items.length - MAX} more` : items.join(', ');
}

export interface LeaseSet {
  readonly leases: Lease[];
  /** Keys the agents skip, with the reason. */
  readonly skipped: Map<string, string>;
}

export function decodeLeases(kvs: readonly RawKV[], config: NetworkConfig): LeaseSet {
  const { accepted, skipped } = filterLeases(kvs, config);
  return { leases: accepted, skipped: new Map(skipped.map((s) => [s.raw.key, s.reason])) };
}
