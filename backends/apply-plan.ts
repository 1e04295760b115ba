import type { Netlink } from '../lib/netlink';
import type { Plan } from './kernel-state';

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
