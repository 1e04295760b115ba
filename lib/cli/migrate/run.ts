/**
 * `twill migrate` from parsed options to its exit code: read the config,
 * plan, print, write (compare-and-swap), then follow the agents.
 */
import type { Etcd3 } from 'etcd3';
import { EtcdAccessError, EtcdRegistry, EtcdSettingsError } from '../../subnet/etcd';
import { etcdClientFrom, type EtcdCliOptions } from '../etcd-options';
import { printable } from '../status/cells';
import type { Assignment } from './flags';
import { backendText } from './backend-object';
import { DEFAULT_DEADLINE_MS, withDeadline } from '../etcd-deadline';
import { follow, type Out } from './follow';
import { assessNodes, decodeLeases, type LeaseSet } from './nodes';
import { MigrationRefused, planMigration, type MigrationPlan } from './plan';

export interface MigrateCliOptions extends EtcdCliOptions {
  to: string;
  set?: Assignment[];
  dryRun?: boolean;
  timeout: number;
}

export async function runMigrate(opts: MigrateCliOptions): Promise<number> {
  const out: Out = (line) => process.stdout.write(`${line}\n`);
  const err: Out = (line) => process.stderr.write(`twill migrate: ${line}\n`);
  const endpoints = opts.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean);
  let client: Etcd3;
  try {
    client = etcdClientFrom(opts);
  } catch (e) {
    if (!(e instanceof EtcdSettingsError)) throw e;
    err(e.message);
    return 2; // bad usage, as twilld answers the same flags
  }
  const registry = new EtcdRegistry(client, opts.etcdPrefix);
  try {
    const config = await withDeadline(registry.getConfig(), DEFAULT_DEADLINE_MS, endpoints);
    if (!config) {
      err(`there is no network config at ${registry.configKey}; twill migrate changes the backend of an existing network (check --etcd-prefix)`);
      return 1;
    }
    let plan: MigrationPlan;
    try {
      plan = planMigration(config.text, opts.to, opts.set ?? []);
    } catch (e) {
      if (!(e instanceof MigrationRefused)) throw e;
      err(`refused, nothing written: ${e.message}`);
      return 1;
    }
    for (const w of plan.warnings) out(`warning: ${w}`);
    const listing = await withDeadline(registry.listLeases(), DEFAULT_DEADLINE_MS, endpoints);
    const nodes = decodeLeases(listing.kvs, plan.newConfig);
    out(`current Backend: ${backendText(plan.currentBackend)}`);
    out(`new Backend:     ${backendText(plan.newBackend)}`);

    if (opts.dryRun) {
      printPlan(out, plan, nodes);
      out(plan.unchanged
        ? `dry run: the config already has this Backend; nothing would be written`
        : `dry run: nothing written (the config at ${registry.configKey} is at revision ${config.revision})`);
      return 0;
    }

    if (plan.unchanged) {
      out(`the config already has this Backend (revision ${config.revision}); not writing it again`);
    } else {
      const { written, revision } = await withDeadline(registry.writeConfigIfUnchanged(plan.newText, config.revision), DEFAULT_DEADLINE_MS, endpoints);
      if (!written) {
        const now = await registry.getConfig().catch(() => undefined);
        err(`${registry.configKey} was changed by someone else after it was read at revision ${config.revision}` +
          `${now ? ` (it is now at revision ${now.revision})` : ' (it is gone now)'}; nothing written. Run twill migrate again to start from the new config`);
        return 1;
      }
      out(`wrote ${registry.configKey} (revision ${revision}); the agents now migrate to ${plan.target}`);
    }
    return await follow(registry, plan, opts.timeout, endpoints, out, err);
  } catch (e) {
    if (e instanceof EtcdAccessError) {
      err(e.message);
      return 1;
    }
    throw e;
  } finally {
    client.close();
  }
}

function printPlan(out: Out, plan: MigrationPlan, nodes: LeaseSet): void {
  const states = assessNodes(nodes.leases, plan);
  out(`${states.length} node${states.length === 1 ? '' : 's'}:`);
  for (const node of states) {
    out(`  ${node.name}: terminates ${node.terminates.join(', ')} → will terminate ${plan.wanted.join(', ')}` +
      `${node.pending.length === 0 ? ' (already)' : ''}`);
  }
  for (const [key, why] of nodes.skipped) out(`  skipped ${printable(key, 60)}: ${printable(why, 160)} (the agents skip it too)`);
}
