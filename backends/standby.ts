/**
 * Standby routes: a peer carried by a backend whose routes a routing daemon
 * installs (bgp: BIRD's, metric BIRD_METRIC) is also planned by the backend
 * that would carry it without that daemon's route — the Fallback, or during
 * a migration the backend it came from — with routes of STANDBY_METRIC. The
 * kernel prefers the daemon's route while it exists; the moment BIRD
 * withdraws it (a session dropped, a peer's BIRD stopped), the standby
 * route carries the traffic, with no reconcile in between. The next
 * reconcile then moves the peer to that backend for real (metric 0), and
 * back when the daemon's route returns.
 *
 * The agent and `twill diagnose` both plan through `plannedState`, so the
 * standby routes are one rule, in one place.
 */
import type { AssignedPeers, Backend, PlanInput } from './backend';
import type { KernelState } from './kernel-state';

/** Above BIRD's kernel metric (32): a standby route never wins while the daemon's route is there. */
export const STANDBY_METRIC = 1024;

/** The backend's plan for its carried peers plus its standby ones, whose routes get STANDBY_METRIC. */
export function plannedState(backend: Backend, input: PlanInput, peers: AssignedPeers): KernelState {
  const standby = peers.standby ?? [];
  if (standby.length === 0) return backend.desired(input, peers);
  const keys = new Set(standby.map((p) => p.key));
  const state = backend.desired(input, { ...peers, carried: [...peers.carried, ...standby] });
  return { ...state, routes: state.routes.map((r) => (r.peer !== undefined && keys.has(r.peer) ? { ...r, metric: STANDBY_METRIC } : r)) };
}
