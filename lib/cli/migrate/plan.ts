/**
 * The plan of a migration: the new config built from the current one and
 * the command line, validated as twilld validates it. Pure.
 */
import { isDeepStrictEqual } from 'util';
import { ConfigError, parseNetworkConfig, type NetworkConfig } from '../../config';
import { BackendUnavailableError, KNOWN_BACKEND_TYPES, checkIPv6Backends, liveChangeOptions, validateBackendConfig } from '../../../backends';
import { compareConfigs, type ConfigChange } from '../../config/live-change';
import { preferenceOrder } from '../../../backends/assignment';
import { printable } from '../status/cells';
import type { Assignment } from './flags';
import { isObject, normalised, typeOf } from './backend-object';

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
    checkIPv6Backends(config);
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
