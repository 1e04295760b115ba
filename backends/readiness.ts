/**
 * What the assignment asks of the running backends about each peer's path
 * (assignPeers' `routed` and `established`), read one way for the agent and
 * `twill diagnose`, so both apply the same rule to the same facts.
 */
import type { IPNet } from '../lib/ip';
import type { AssignmentInput } from './assignment';
import type { Backend } from './backend';

export type PeerReadiness = Pick<AssignmentInput, 'routed' | 'established'>;

/**
 * `instances`: instance key → its backend. A read that fails is reported
 * through `problem` and counts as nothing learned and no session: the
 * assignment then keeps such peers where they are safe.
 */
export async function peerReadiness(
  instances: ReadonlyMap<string, Backend>,
  network: IPNet | undefined,
  problem: (key: string, message: string) => void,
): Promise<PeerReadiness> {
  let routed: Set<string> | undefined;
  const sessions = new Map<string, ReadonlySet<string>>();
  for (const [key, backend] of instances) {
    if (backend.learnedRoutes) {
      routed ??= new Set();
      try {
        for (const dst of await backend.learnedRoutes(network)) routed.add(dst);
      } catch (err) {
        problem(key, `cannot read the routes it learned: ${(err as Error).message}`);
      }
    }
    if (backend.establishedPeers) {
      try {
        sessions.set(key, await backend.establishedPeers());
      } catch (err) {
        sessions.set(key, new Set());
        problem(key, `cannot read its sessions: ${(err as Error).message}`);
      }
    }
  }
  return {
    ...(routed ? { routed: (subnet: string) => routed.has(subnet) } : {}),
    ...(sessions.size ? { established: (key: string, subnet: string) => sessions.get(key)?.has(subnet) ?? true } : {}),
  };
}
