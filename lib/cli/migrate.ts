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
import { InvalidArgumentError, Option, type Command } from 'commander';
import { isDeepStrictEqual } from 'util';
import type { Etcd3 } from 'etcd3';
import { ConfigError, parseNetworkConfig, setting, type NetworkConfig } from '../config';
import {
  EtcdAccessError, EtcdRegistry, EtcdSettingsError, EtcdUnavailableError,
  filterLeases, peersOf, translateEtcdError, type Lease, type LeaseListing, type RawKV,
} from '../subnet';
import { BackendUnavailableError, KNOWN_BACKEND_TYPES, liveChangeOptions, validateBackendConfig } from '../../backends';
import { compareConfigs, type ConfigChange } from '../config/live-change';
import { chooseBackend, preferenceOrder, terminatedBy } from '../../backends/choice';
import { addEtcdOptions, etcdClientFrom, type EtcdCliOptions } from './etcd-options';
import { printable } from './status/cells';

interface MigrateCliOptions extends EtcdCliOptions {
  to: string;
  set?: Assignment[];
  dryRun?: boolean;
  timeout: number;
}

/** One `--set key=value`; `value` undefined means remove the key (`key=null`). */
export interface Assignment {
  readonly key: string;
  readonly value: unknown;
}

export const DEFAULT_TIMEOUT_S = 300;
export const POLL_INTERVAL_MS = 500;
/** The first reads and the write give up after this, as `twill status` does. */
const ETCD_DEADLINE_MS = 3500;

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
Same-type changes of the running backend's settings (other than Fallback)
cannot be applied live: migrate to another backend first, then back.

Examples:
  twill migrate --to host-gw --dry-run
  twill migrate --to vxlan --set VNI=2 --set DirectRouting=true
  twill migrate --to vxlan --set Fallback=udp --timeout 600`)
    .action(async (opts: MigrateCliOptions) => {
      process.exitCode = await runMigrate(opts);
    });
}

/** `key=value`: the value parsed as JSON when it parses, else kept as the string. */
export function parseAssignment(text: string): Assignment {
  const eq = text.indexOf('=');
  if (eq < 0) throw new InvalidArgumentError(`${JSON.stringify(text)} is not key=value (for example VNI=2)`);
  const key = text.slice(0, eq).trim();
  if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(key)) throw new InvalidArgumentError(`${JSON.stringify(key)} is not a setting name (for example VNI=2)`);
  if (key.toLowerCase() === 'type') throw new InvalidArgumentError('the backend type is chosen with --to, not --set Type=');
  const raw = text.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  return { key, value: value === null ? undefined : value };
}

function collectAssignment(text: string, previous: Assignment[] | undefined): Assignment[] {
  return [...(previous ?? []), parseAssignment(text)];
}

function parseTimeout(text: string): number {
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(n > 0)) throw new InvalidArgumentError('must be a number of seconds greater than 0');
  return n;
}

// ---- the plan: the new config, validated ----

/** The migration cannot go ahead as asked; nothing was (or will be) written. */
export class MigrationRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationRefused';
  }
}

export interface MigrationPlan {
  /** The current `Backend` object as stored; undefined when the config has none (udp). */
  readonly currentBackend?: unknown;
  /** The new `Backend` object, as it will be written. */
  readonly newBackend: Record<string, unknown>;
  /** The whole new config text. */
  readonly newText: string;
  readonly newConfig: NetworkConfig;
  /** The target backend as an instance key: the type, with the settings peers must match when not the defaults (`vxlan{VNI=2}`). */
  readonly target: string;
  /** preferenceOrder(new backend): the target, then its Fallback. */
  readonly order: readonly string[];
  /** What every node terminates once converged: the target and the Fallback type. */
  readonly wanted: readonly string[];
  /** The config already has exactly this Backend: nothing to write. */
  readonly unchanged: boolean;
  /** Warnings of the config parser about the new config (unknown keys, …). */
  readonly warnings: readonly string[];
}

/**
 * Builds and validates the new config from the current config text.
 * @throws MigrationRefused with a message naming the field and the value.
 */
export function planMigration(currentText: string, to: string, assignments: readonly Assignment[]): MigrationPlan {
  let current: unknown;
  try {
    current = JSON.parse(currentText);
  } catch (err) {
    throw new MigrationRefused(`the current config is not valid JSON (${printable((err as Error).message, 160)}); fix it first`);
  }
  if (!isObject(current)) throw new MigrationRefused('the current config is not a JSON object; fix it first');

  const backendKeys = Object.keys(current).filter((k) => k.toLowerCase() === 'backend');
  const currentBackend = backendKeys.length > 0 ? current[backendKeys[backendKeys.length - 1]] : undefined;
  const currentType = currentBackend === undefined || currentBackend === null ? 'udp' : typeOf(currentBackend);
  const target = to.trim().toLowerCase();

  const newBackend: Record<string, unknown> = { Type: target };
  if (target === currentType && isObject(currentBackend)) {
    for (const [k, v] of Object.entries(currentBackend)) if (k.toLowerCase() !== 'type') newBackend[k] = v;
  }
  for (const { key, value } of assignments) {
    for (const k of Object.keys(newBackend)) if (k.toLowerCase() === key.toLowerCase()) delete newBackend[k];
    if (value !== undefined) newBackend[key] = value;
  }

  // The other keys as they are, Backend where it was (or last).
  const next: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(current)) {
    if (k.toLowerCase() !== 'backend') next[k] = v;
    else if (!('Backend' in next)) next.Backend = newBackend;
  }
  if (!('Backend' in next)) next.Backend = newBackend;
  const newText = currentText.includes('\n') ? `${JSON.stringify(next, null, 2)}\n` : JSON.stringify(next);

  const newConfig = validate(newText);
  const backend = newConfig.backend;
  if (backend.type === 'alloc') {
    throw new MigrationRefused('alloc has no datapath: after migrating to it no node would carry pod traffic (and an alloc lease cannot be told from a udp one); choose vxlan, host-gw, ipip or udp');
  }
  // The agents decide what a change is on parsed values (a default written out is no change); so does this.
  const change = compareWithRunning(currentText, newConfig);
  if (currentType === backend.type && change?.kind === 'refused') {
    throw new MigrationRefused(`Backend is already ${backend.type}, and the agents cannot apply this change of its settings: ${change.reason}`);
  }
  const unchanged = change ? change.kind === 'unchanged' : currentType === backend.type && isDeepStrictEqual(normalised(currentBackend), normalised(newBackend));
  const order = preferenceOrder(backend);
  return { currentBackend, newBackend, newText, newConfig, target: order[0], order, wanted: order, unchanged, warnings: newConfig.warnings };
}

/** The config as twilld checks it (lib/agent/config-source.ts). */
function validate(text: string): NetworkConfig {
  try {
    const config = parseNetworkConfig(text, KNOWN_BACKEND_TYPES);
    validateBackendConfig(config.backend);
    return config;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof BackendUnavailableError) throw new MigrationRefused(err.message);
    throw err;
  }
}

/** What the agents will make of the new config, compared with the running one; undefined when the running one does not parse. */
function compareWithRunning(currentText: string, next: NetworkConfig): ConfigChange | undefined {
  try {
    return compareConfigs(parseNetworkConfig(currentText, KNOWN_BACKEND_TYPES), next, liveChangeOptions);
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeOf(backend: unknown): string | undefined {
  if (!isObject(backend)) return undefined;
  const t = setting(backend, 'Type');
  return typeof t === 'string' ? t.toLowerCase() : undefined;
}

/** A Backend's settings by lower-case key, without Type and without nulls (null is absent). */
function normalised(backend: unknown): Map<string, unknown> {
  const m = new Map<string, unknown>();
  if (!isObject(backend)) return m;
  for (const [k, v] of Object.entries(backend)) {
    if (k.toLowerCase() === 'type') continue;
    if (v === null || v === undefined) m.delete(k.toLowerCase());
    else m.set(k.toLowerCase(), v);
  }
  return m;
}


/** A Backend object for one line of output (it may come from etcd: made printable). */
export function backendText(backend: unknown): string {
  return backend === undefined || backend === null ? '(none: udp)' : printable(JSON.stringify(backend) ?? String(backend), 400);
}

// ---- the write ----

/**
 * The config write of `twill migrate` for a caller that holds the config key
 * rather than a registry: `EtcdRegistry.writeConfigIfUnchanged` on that key.
 */
export function writeConfigIfUnchanged(client: Etcd3, key: string, text: string, modRevision: bigint): Promise<{ written: boolean; revision: bigint }> {
  const suffix = '/config';
  if (!key.endsWith(suffix)) throw new Error(`${JSON.stringify(key)} is not a network config key (<prefix>${suffix})`);
  return new EtcdRegistry(client, key.slice(0, -suffix.length)).writeConfigIfUnchanged(text, modRevision);
}

// ---- the nodes ----

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
  const sorted = [...leases].sort((a, b) => (a.subnet.ip.value < b.subnet.ip.value ? -1 : a.subnet.ip.value > b.subnet.ip.value ? 1 : 0));
  return sorted.map((lease) => {
    const terminates = terminatedBy(lease.attrs);
    const notOnTarget = new Map<string, string[]>();
    for (const peer of peersOf(sorted, lease.key)) {
      const over = chooseBackend(plan.order, terminates, terminatedBy(peer.attrs)) ?? 'none';
      if (over === plan.target) continue;
      notOnTarget.set(over, [...(notOnTarget.get(over) ?? []), peer.subnet.toString()]);
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
      name: `${lease.subnet.toString()} (${lease.attrs.publicIP})`,
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

interface LeaseSet {
  readonly leases: Lease[];
  /** Keys the agents skip, with the reason. */
  readonly skipped: Map<string, string>;
}

function decodeLeases(kvs: readonly RawKV[], config: NetworkConfig): LeaseSet {
  const { accepted, skipped } = filterLeases(kvs, config);
  return { leases: accepted, skipped: new Map(skipped.map((s) => [s.raw.key, s.reason])) };
}

// ---- the command ----

type Out = (line: string) => void;

async function runMigrate(opts: MigrateCliOptions): Promise<number> {
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
    const config = await bounded(registry.getConfig(), endpoints);
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
    const listing = await bounded(registry.listLeases(), endpoints);
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
      const { written, revision } = await bounded(registry.writeConfigIfUnchanged(plan.newText, config.revision), endpoints);
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

/** Waits for every node to converge, printing each change of a node's state. */
async function follow(registry: EtcdRegistry, plan: MigrationPlan, timeoutS: number, endpoints: readonly string[], out: Out, err: Out): Promise<number> {
  const started = Date.now();
  const deadline = started + timeoutS * 1000;
  const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`;
  const shown = new Map<string, string>();
  const names = new Map<string, string>();
  const skippedShown = new Set<string>();
  let lastError = '';
  let last: NodeState[] = [];
  out(`waiting up to ${timeoutS} s for every node to terminate ${plan.wanted.join(', ')} only (Ctrl-C stops watching; the agents carry on)`);

  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for (;;) {
      let read: { listing: LeaseListing; config: { text: string; revision: bigint } | undefined } | undefined;
      try {
        read = { listing: await bounded(registry.listLeases(), endpoints), config: await bounded(registry.getConfig(), endpoints) };
        lastError = '';
      } catch (e) {
        if (!(e instanceof EtcdAccessError)) throw e;
        if (e.message !== lastError) err(`cannot read etcd (retrying until the timeout): ${e.message}`);
        lastError = e.message;
      }
      if (read) {
        const { listing, config } = read;
        const now = config ? attempt(() => parseNetworkConfig(config.text, KNOWN_BACKEND_TYPES).backend) : undefined;
        if (!now || now.type !== plan.newConfig.backend.type || !isDeepStrictEqual(normalised(now.settings), normalised(plan.newConfig.backend.settings))) {
          err(`the config was changed by someone else while waiting (${config ? `Backend is now ${backendText(backendOf(config.text))}` : 'the key was deleted'}); stopped watching`);
          return 1;
        }
        const nodes = decodeLeases(listing.kvs, plan.newConfig);
        for (const [key, why] of nodes.skipped) {
          const id = `${key}\n${why}`;
          if (!skippedShown.has(id)) out(`${stamp()} skipped ${printable(key, 60)}: ${printable(why, 160)} (the agents skip it too)`);
          skippedShown.add(id);
        }
        last = assessNodes(nodes.leases, plan);
        const present = new Set(last.map((n) => n.key));
        for (const [key, name] of names) {
          if (present.has(key)) continue;
          out(`${stamp()} ${name}: lease removed`);
          names.delete(key);
          shown.delete(key);
        }
        for (const node of last) {
          const line = nodeLine(node, plan.target);
          if (shown.get(node.key) !== line) out(`${stamp()} ${line}`);
          shown.set(node.key, line);
          names.set(node.key, node.name);
        }
        if (last.every((n) => n.pending.length === 0)) {
          out(`converged: ${last.length} node${last.length === 1 ? '' : 's'} on ${plan.target}${plan.wanted.length > 1 ? ` (with fallback ${plan.wanted.slice(1).join(', ')})` : ''} in ${elapsed()}`);
          return 0;
        }
      }
      if (Date.now() >= deadline) {
        const laggards = last.filter((n) => n.pending.length > 0);
        err(`timed out after ${timeoutS} s: ${lastError && laggards.length === 0 ? 'etcd could not be read' : `${laggards.length} of ${last.length} nodes not converged`}`);
        for (const n of laggards) process.stderr.write(`  ${n.name}: terminates ${n.terminates.join(', ')}; ${n.pending.join(', ')}\n`);
        process.stderr.write(`The config keeps the new Backend and the agents carry on; run the same twill migrate command again to keep watching.\n`);
        return 1;
      }
      if (await sleep(Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - Date.now())), stop.signal)) {
        err(`interrupted after ${elapsed()}: the config keeps the new Backend and the agents carry on; run the same twill migrate command again to keep watching`);
        return 130;
      }
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** The Backend object of a config text, for a message (undefined when the text has none or is not JSON). */
function backendOf(text: string): unknown {
  const obj = attempt(() => JSON.parse(text) as unknown);
  if (!isObject(obj)) return undefined;
  return setting(obj, 'Backend');
}

function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/** Resolves true when aborted. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(false);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** An etcd call that gives up after ETCD_DEADLINE_MS, failing with an EtcdAccessError naming the endpoints. */
async function bounded<T>(work: Promise<T>, endpoints: readonly string[]): Promise<T> {
  const where = endpoints.length === 1 ? `etcd at ${endpoints[0]}` : `etcd at one of ${endpoints.join(', ')}`;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EtcdUnavailableError(
      where, `did not answer within ${ETCD_DEADLINE_MS / 1000} s`, 'check --etcd-endpoints, and that etcd runs there and is reachable from here',
    )), ETCD_DEADLINE_MS);
  });
  try {
    return await Promise.race([work, late]);
  } catch (e) {
    const translated = translateEtcdError(e, { endpoints });
    if (translated instanceof EtcdAccessError) throw translated;
    throw new Error(`${where}: ${translated instanceof Error ? translated.message : String(translated)}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
}
