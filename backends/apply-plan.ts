import type { Netlink } from '../lib/netlink';
import type { ReconcileReport } from './backend';
import { diffRoutes, emptyPlan, type Plan, type WantedRoute } from './kernel-state';

export interface PlanOutcome {
  readonly changed: number;
  readonly removed: number;
  /** One line per operation the kernel refused. */
  readonly failures: string[];
}

/**
 * Applies a plan: every add/replace pipelined, then every delete. A delete
 * of something already gone counts as done; any other refusal is reported,
 * not thrown, so one bad entry never blocks the others.
 */
export async function applyPlan(nl: Netlink, plan: Plan): Promise<PlanOutcome> {
  const failures: string[] = [];
  const up = plan.upserts.length ? await nl.apply(plan.upserts) : { applied: 0, failed: [] };
  const down = plan.deletes.length ? await nl.apply(plan.deletes, { ignoreMissing: true }) : { applied: 0, failed: [] };
  for (const f of [...up.failed, ...down.failed]) failures.push(f.error.message);
  return { changed: up.applied, removed: down.applied, failures };
}

/**
 * Makes the routes carrying `protocol` exactly `wanted` (leaving those to a
 * destination in `keep`), and reports it with the peers the caller skipped.
 */
export async function reconcileRoutes(
  nl: Netlink, protocol: number, wanted: readonly WantedRoute[], skipped: string[], keep?: ReadonlySet<string>,
): Promise<ReconcileReport> {
  const plan = emptyPlan();
  diffRoutes(plan, wanted, await nl.listRoutes({ family: 4, protocol }), protocol, keep);
  const outcome = await applyPlan(nl, plan);
  return { changed: outcome.changed, removed: outcome.removed, skipped, failures: outcome.failures };
}

/** Removes every route carrying `protocol` (a backend's own), in any table. */
export async function deleteRoutesOf(nl: Netlink, protocol: number): Promise<void> {
  const routes = await nl.listRoutes({ family: 4, protocol });
  await nl.apply(routes.map((r) => ({ op: 'deleteRoute' as const, route: { dst: r.dst, protocol, table: r.table } })), { ignoreMissing: true });
}
