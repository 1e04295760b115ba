/**
 * The one reconciler: reads what the kernel holds of a plan's objects,
 * diffs it against the plan (kernel-state.ts) and applies the difference.
 * Start-up, lease events, the repair timer, restarts and migrations all end
 * here; `twill diagnose` reads the same observation and reports the diff.
 *
 * Failure semantics: a refused operation is reported, never thrown, so one
 * bad entry never blocks the others; a delete of something already gone
 * counts as done. Reading the kernel or the engine may throw (the caller's
 * next reconcile retries).
 */
import type { Netlink } from '../lib/netlink';
import type { Backend } from './backend';
import { diffKernelState, type KernelState, type ObservedState, type Plan } from './kernel-state';

export interface ReconcileReport {
  /** Kernel objects created or replaced. */
  readonly changed: number;
  /** Kernel objects removed. */
  readonly removed: number;
  /** Peers skipped, each with the reason (a bad lease from another node). */
  readonly skipped: readonly string[];
  /** Kernel operations refused, each with the reason; retried on the next reconcile. */
  readonly failures: readonly string[];
}

export const EMPTY_REPORT: ReconcileReport = { changed: 0, removed: 0, skipped: [], failures: [] };

/** Reads the kernel objects `state` owns: routes of its protocol, and its devices' addresses, neighbours and FDB entries. */
export async function observe(nl: Netlink, state: KernelState): Promise<ObservedState> {
  // Both families: a backend that carries IPv6 (host-gw in dual stack) owns its IPv6 routes by the same number.
  const routes = state.protocol !== undefined ? nl.listRoutes({ protocol: state.protocol }) : Promise.resolve([]);
  const devices = await Promise.all(state.devices.map(async (d) => {
    const family = d.family === 'dual' ? undefined : d.family ?? 4;
    const [addresses, neighbors, fdb] = await Promise.all([
      nl.listAddresses(d.ifindex, family),
      d.neighbors ? nl.listNeighbors(d.ifindex, family) : Promise.resolve([]),
      d.fdb ? nl.listFdb(d.ifindex) : Promise.resolve([]),
    ]);
    return [d.ifindex, { addresses, neighbors, fdb }] as const;
  }));
  return { routes: await routes, devices: new Map(devices) };
}

/** Makes the kernel hold `state`: the engine's table first, then addresses, link-layer entries and routes, then deletes. */
export async function reconcileKernel(nl: Netlink, backend: Pick<Backend, 'setEnginePeers'>, state: KernelState): Promise<ReconcileReport> {
  // The engine learns its peers before their routes exist, so no packet reaches it unrouted.
  if (state.engine && backend.setEnginePeers) await backend.setEnginePeers(state.engine);
  const plan = diffKernelState(state, await observe(nl, state));
  const outcome = await applyPlan(nl, plan);
  return { ...outcome, skipped: state.skipped };
}

/** Applies a plan: addresses, then every add/replace pipelined, then every delete. */
export async function applyPlan(nl: Netlink, plan: Plan): Promise<Omit<ReconcileReport, 'skipped'>> {
  const failures: string[] = [];
  let changed = 0;
  let removed = 0;
  for (const a of plan.addresses) {
    try {
      if (a.op === 'replaceAddress') {
        await nl.replaceAddress(a.ifindex, a.cidr);
        changed++;
      } else {
        await nl.deleteAddress(a.ifindex, a.cidr);
        removed++;
      }
    } catch (err) {
      failures.push(`${a.op === 'replaceAddress' ? 'add' : 'delete'} address ${a.cidr} on ${a.dev}: ${(err as Error).message}`);
    }
  }
  const up = plan.upserts.length ? await nl.apply(plan.upserts) : { applied: 0, failed: [] };
  const down = plan.deletes.length ? await nl.apply(plan.deletes, { ignoreMissing: true }) : { applied: 0, failed: [] };
  for (const f of [...up.failed, ...down.failed]) failures.push(f.error.message);
  return { changed: changed + up.applied, removed: removed + down.applied, failures };
}

/** Removes every route carrying `protocol` (a retired backend's own), in any table. */
export async function removeRoutes(nl: Netlink, protocol: number): Promise<void> {
  const routes = await nl.listRoutes({ protocol });
  await nl.apply(routes.map((r) => ({ op: 'deleteRoute' as const, route: { dst: r.dst, protocol, table: r.table } })), { ignoreMissing: true });
}
