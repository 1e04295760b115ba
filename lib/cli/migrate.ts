/**
 * `twill migrate --to <type> [--set key=value ...] [--dry-run] [--timeout s]`
 * — switches a running cluster's backend (DESIGN §5, live migration).
 *
 * 1. Reads `<prefix>/config` and builds the new config: `Backend` becomes
 *    `{"Type": <to>}`, plus the current backend's settings when the type
 *    stays the same, then each `--set` on top (the value is JSON when it
 *    parses as JSON, else a string; `null` removes the key). The new config
 *    is validated as twilld validates it (the config parser, then the
 *    backend's own settings, then its `Fallback`). A change of the running
 *    backend's settings is a migration when peers must match them (vxlan
 *    VNI/Port/GBP, udp Port), applied in place when the backend can take
 *    them live, and refused otherwise, with the agents' reason.
 * 2. `--dry-run` prints both `Backend` objects and, per node, what it
 *    terminates now and will terminate, and writes nothing.
 * 3. Otherwise the config is written with a compare-and-swap on its mod
 *    revision, so a concurrent edit is never overwritten; when the config
 *    already has exactly this Backend nothing is written (a re-run after an
 *    interruption only watches: the state lives in etcd).
 * 4. Then it re-reads the leases every 500 ms and prints a line whenever a
 *    node's state changes: what it terminates, and which peers it still
 *    reaches over a backend other than the target (`chooseBackend`, as the
 *    agents choose), until every node terminates exactly the target (and
 *    the Fallback) with the target as its primary backend, or the timeout.
 *
 * Exit codes: 0 converged (or a dry run); 1 refused, a concurrent edit,
 * etcd unreadable, the timeout, or the config changed by someone else
 * while waiting; 2 bad usage; 130 interrupted while waiting.
 */
import { Option, type Command } from 'commander';
import type { Etcd3 } from 'etcd3';
import { EtcdRegistry } from '../subnet/etcd';
import { KNOWN_BACKEND_TYPES } from '../../backends';
import { addEtcdOptions } from './etcd-options';
import { collectAssignment, parseTimeout } from './migrate/flags';
import { runMigrate, type MigrateCliOptions } from './migrate/run';

export { parseAssignment, type Assignment } from './migrate/flags';
export { MigrationRefused, planMigration, type MigrationPlan } from './migrate/plan';
export { backendText } from './migrate/backend-object';
export { assessNodes, nodeLine, type NodeState } from './migrate/nodes';
export { POLL_INTERVAL_MS } from './migrate/follow';

export const DEFAULT_TIMEOUT_S = 300;

export function registerMigrate(program: Command): void {
  const cmd = program
    .command('migrate')
    .description("switch the cluster's backend: write the new Backend into the network config, then follow the agents until every node has moved over");
  addEtcdOptions(cmd)
    .requiredOption('--to <type>', `the backend to migrate to (${KNOWN_BACKEND_TYPES.join(', ')})`)
    .addOption(new Option('--set <key=value>', 'a Backend setting (repeatable); the value is JSON when it parses (numbers, true/false, objects), else a string; null removes the key').argParser(collectAssignment))
    .addOption(new Option('--dry-run', 'print the current and the new Backend and what each node will terminate; write nothing'))
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the nodes to converge').argParser(parseTimeout).default(DEFAULT_TIMEOUT_S))
    .addHelpText('after', `
With --to the running type, its settings are kept and --set changes them
live: a new vxlan VNI or Port, or a new udp Port, migrates like a change of
type (each node runs both until every peer has moved); vxlan DirectRouting,
MTU and Learning and ipip DirectRouting and Mode change in place. What the
agents cannot apply (vxlan GBP alone, ipip between kernel and userspace
mode) is refused with their reason, and nothing is written.

Examples:
  twill migrate --to host-gw --dry-run
  twill migrate --to vxlan --set VNI=2 --set DirectRouting=true
  twill migrate --to vxlan --set Fallback=udp --timeout 600`)
    .action(async (opts: MigrateCliOptions) => {
      process.exitCode = await runMigrate(opts);
    });
}

/**
 * The config write of `twill migrate` for a caller that holds the config key
 * rather than a registry: `EtcdRegistry.writeConfigIfUnchanged` on that key.
 */
export function writeConfigIfUnchanged(client: Etcd3, key: string, text: string, modRevision: bigint): Promise<{ written: boolean; revision: bigint }> {
  const suffix = '/config';
  if (!key.endsWith(suffix)) throw new Error(`${JSON.stringify(key)} is not a network config key (<prefix>${suffix})`);
  return new EtcdRegistry(client, key.slice(0, -suffix.length)).writeConfigIfUnchanged(text, modRevision);
}
