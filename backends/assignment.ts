/**
 * Which backend instance of this node carries each peer: one pure step,
 * run by the agent on every reconcile and by `twill diagnose` to know what
 * each backend should hold. A migration is nothing but a change of its
 * inputs (which instances run, in which order of preference).
 *
 * Peers that no backend can carry are skipped here, once, with the reason:
 * a lease claiming this node's public IP, one with no public IP, one whose
 * node terminates no backend this node runs (or, for host-gw, one the
 * kernel does not reach directly and no Fallback carries).
 */
import type { Lease } from '../lib/subnet';
import type { AssignedPeers, Peer } from './backend';
import { backendDataOf, chooseBackend, terminatedBy } from './choice';
import { typeOfKey } from './instance';

export interface AssignmentInput {
  /** The configured preference: Backend.Type's instance, then its Fallback's (choice.ts preferenceOrder). */
  readonly order: readonly string[];
  /** The instances this node runs, preferred first. */
  readonly running: readonly string[];
  readonly own: Lease;
  /** Every accepted lease; this node's own is left out here. */
  readonly leases: Iterable<Lease>;
  /** Whether the kernel reaches `publicIP` directly (host-gw needs it). */
  readonly reach: (publicIP: string) => boolean;
  /** Why it does not, for the skip message. */
  readonly whyNotReached: (publicIP: string) => string;
}

export interface Assignment {
  /** Instance key → peers it carries, as that instance sees them. */
  readonly carried: ReadonlyMap<string, readonly Peer[]>;
  /** Every peer some backend could carry (userspace ipip accepts packets from all of them). */
  readonly known: readonly Peer[];
  readonly skipped: readonly string[];
}

/** The peer as the instance `key` sees it: its BackendData for that instance. */
export function peerFor(lease: Lease, key: string): Peer {
  return { key: lease.key, subnet: lease.subnet, publicIP: lease.attrs.publicIP, data: backendDataOf(lease.attrs, key) };
}

/** Why `lease` cannot be a peer of `own` at all; undefined when it can. */
export function unusablePeer(lease: Lease, own: Lease): string | undefined {
  const label = `peer ${lease.subnet.toString()}`;
  if (lease.attrs.publicIP === own.attrs.publicIP) return `${label} claims this node's own public IP ${lease.attrs.publicIP}; ignoring it`;
  if (lease.attrs.publicIP === '0.0.0.0') return `${label} publishes no public IP; ignoring it`;
  return undefined;
}

export function assignPeers(input: AssignmentInput): Assignment {
  const carried = new Map<string, Peer[]>(input.running.map((k) => [k, []]));
  const known: Peer[] = [];
  const skipped: string[] = [];
  const usable = (key: string, publicIP: string) => typeOfKey(key) !== 'host-gw' || input.reach(publicIP);
  for (const lease of input.leases) {
    if (lease.key === input.own.key) continue;
    const unusable = unusablePeer(lease, input.own);
    if (unusable) {
      skipped.push(unusable);
      continue;
    }
    const remote = terminatedBy(lease.attrs, input.running);
    const key = chooseBackend(input.order, input.running, remote, (k) => usable(k, lease.attrs.publicIP));
    known.push(peerFor(lease, key ?? remote[0]));
    if (!key) {
      const offLink = remote.includes('host-gw') && input.running.includes('host-gw')
        ? `; host-gw cannot reach it (${input.whyNotReached(lease.attrs.publicIP)}): give host-gw a Fallback (e.g. "Fallback": "vxlan") to carry such peers`
        : ': not reachable until they share a backend';
      skipped.push(`peer ${lease.subnet.toString()} (${lease.attrs.publicIP}) terminates ${remote.join(', ')}; this node runs ${input.running.join(', ')}${offLink}`);
      continue;
    }
    carried.get(key)!.push(peerFor(lease, key));
  }
  return { carried, known, skipped };
}

/**
 * The peers instance `key` plans for, given the peers each instance carried
 * after the last reconcile: a peer that moved from A to another instance is
 * `leaving` A (A keeps its entries, as A saw the peer, until the new route
 * has replaced A's), in this pass only.
 */
export function assignedTo(assignment: Assignment, key: string, previous: ReadonlyMap<string, readonly Peer[]>): AssignedPeers {
  const carried = assignment.carried.get(key) ?? [];
  const here = new Set(carried.map((p) => p.key));
  const carriedSomewhere = new Set([...assignment.carried.values()].flatMap((ps) => ps.map((p) => p.key)));
  const leaving = (previous.get(key) ?? []).filter((p) => !here.has(p.key) && carriedSomewhere.has(p.key));
  return { carried, leaving, known: assignment.known };
}
