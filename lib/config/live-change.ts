/**
 * What a change of the network config means to a running cluster
 * (DESIGN §5: the config is watched; a bad config is refused and the last
 * good one keeps running).
 *
 * - The address plan (Network, SubnetLen, SubnetMin, SubnetMax, the IPv6
 *   equivalents, EnableIPv4/EnableIPv6) cannot change under running nodes:
 *   every lease and every pod address was allocated from it. Such a change
 *   is refused with a message naming each key, its old and new value, and
 *   what to do instead.
 * - A new Backend.Type (or only a new Backend.Fallback) is a live migration:
 *   `backend`.
 * - New settings for the same Backend.Type that peers must match (the
 *   backend's identity: vxlan VNI, Port, GBP; udp Port) are a migration
 *   too: a second backend of the type runs beside the first. Settings the
 *   running backend takes in place (`liveKeys`) are applied as they are.
 *   Any other change of settings is refused.
 *
 * Comparison is canonical, on the parsed configs (so an explicit default
 * equals an absent key): backend setting names match case-insensitively as
 * `setting()` does, key order never matters, and `null` counts as absent.
 * Pure: no I/O, no clock.
 */
import type { IP, IPNet } from '../ip';
import { setting } from './parse';
import { byCodeUnit } from '../order';
import type { BackendConfig, NetworkConfig } from './types';

export type ConfigChange =
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'backend'; readonly from: BackendConfig; readonly to: BackendConfig }
  | { readonly kind: 'refused'; readonly reason: string };

/** The backend key that may change on its own (a migration of the fallback). */
const FALLBACK = 'fallback';

export interface CompareOptions {
  /** Backend keys the running backend of `type` applies in place, without a new device (vxlan: DirectRouting, MTU). */
  readonly liveKeys?: (type: string) => readonly string[];
  /** The instance key of a backend config (backends/instance.ts); two configs of one type with different keys migrate. */
  readonly instanceKey?: (backend: BackendConfig) => string;
  /** Why backends of the two configs cannot run side by side on one node; undefined when they can. */
  readonly conflict?: (from: BackendConfig, to: BackendConfig) => string | undefined;
}

export function compareConfigs(running: NetworkConfig, next: NetworkConfig, opts: CompareOptions = {}): ConfigChange {
  const reasons: string[] = [];

  const plan = addressPlanChanges(running, next);
  if (plan.length > 0) {
    reasons.push(
      `${describe(plan)}: ${plan.length === 1 ? 'this key cannot' : 'these keys cannot'} be changed on a running cluster, ` +
      `because every node's subnet lease and every pod address were allocated from ${plan.length === 1 ? 'it' : 'them'}. ` +
      `Put the old ${plan.length === 1 ? 'value' : 'values'} back; to change the address plan, stop twilld on every node, ` +
      'delete the subnet leases in etcd (<prefix>/subnets/), write the new config, start twilld again and recreate the pods',
    );
  }

  const sameType = running.backend.type === next.backend.type;
  const newIdentity = sameType && opts.instanceKey !== undefined && opts.instanceKey(running.backend) !== opts.instanceKey(next.backend);
  let changedInPlace = false;
  if (newIdentity) {
    const why = opts.conflict?.(running.backend, next.backend);
    if (why) reasons.push(`${describe(settingChanges(running.backend, next.backend))}: ${why}`);
  } else if (sameType) {
    const live = new Set((opts.liveKeys?.(running.backend.type) ?? []).map((k) => `backend.${k.toLowerCase()}`));
    const all = settingChanges(running.backend, next.backend);
    const settings = all.filter((c) => !live.has(c.key.toLowerCase()));
    changedInPlace = all.length > settings.length;
    if (settings.length > 0) {
      const type = JSON.stringify(running.backend.type);
      reasons.push(
        `${describe(settings)}: the settings of the running ${type} backend cannot be changed on a running cluster, ` +
        'because agents apply backend changes by migrating (the new backend runs beside the old one until every peer has moved). ' +
        `Put the old ${settings.length === 1 ? 'value' : 'values'} back; to change the settings, migrate to another backend ` +
        `(change Backend.Type), then migrate back to ${type} with the new settings`,
      );
    }
  }

  if (reasons.length > 0) {
    return { kind: 'refused', reason: `${reasons.join('. Also, ')}. The running config stays in force.` };
  }
  if (!sameType || newIdentity || changedInPlace || !sameValue(fallbackOf(running.backend), fallbackOf(next.backend))) {
    return { kind: 'backend', from: running.backend, to: next.backend };
  }
  return { kind: 'unchanged' };
}

/** One changed key: its documented spelling and both values as shown to the operator. */
interface KeyChange {
  readonly key: string;
  readonly from: string;
  readonly to: string;
}

function describe(changes: readonly KeyChange[]): string {
  return changes.map((c) => `${c.key} would change from ${c.from} to ${c.to}`).join(', ');
}

// ---- address plan ----

interface FamilyKeys {
  readonly enable: 'EnableIPv4' | 'EnableIPv6';
  readonly enabled: (c: NetworkConfig) => boolean;
  readonly fields: readonly {
    readonly key: string;
    readonly get: (c: NetworkConfig) => IP | IPNet | number | undefined;
  }[];
}

const FAMILIES: readonly FamilyKeys[] = [
  {
    enable: 'EnableIPv4',
    enabled: (c) => c.enableIPv4,
    fields: [
      { key: 'Network', get: (c) => c.network },
      { key: 'SubnetLen', get: (c) => c.subnetLen },
      { key: 'SubnetMin', get: (c) => c.subnetMin },
      { key: 'SubnetMax', get: (c) => c.subnetMax },
    ],
  },
  {
    enable: 'EnableIPv6',
    enabled: (c) => c.enableIPv6,
    fields: [
      { key: 'IPv6Network', get: (c) => c.ipv6Network },
      { key: 'IPv6SubnetLen', get: (c) => c.ipv6SubnetLen },
      { key: 'IPv6SubnetMin', get: (c) => c.ipv6SubnetMin },
      { key: 'IPv6SubnetMax', get: (c) => c.ipv6SubnetMax },
    ],
  },
];

/**
 * Changes of the address plan. A family switched on or off is named by its
 * Enable key alone (its other keys follow from it); for a family enabled in
 * both, each key whose effective value (defaults filled in) differs, except
 * that the bounds are left out when the network or subnet length changed.
 */
function addressPlanChanges(running: NetworkConfig, next: NetworkConfig): KeyChange[] {
  const changes: KeyChange[] = [];
  for (const family of FAMILIES) {
    const was = family.enabled(running);
    const is = family.enabled(next);
    if (was !== is) {
      changes.push({ key: family.enable, from: String(was), to: String(is) });
      continue;
    }
    if (!is) continue;
    const changed: KeyChange[] = [];
    for (const field of family.fields) {
      const a = showPlanValue(field.get(running));
      const b = showPlanValue(field.get(next));
      if (a !== b) changed.push({ key: field.key, from: a, to: b });
    }
    // The default SubnetMin/SubnetMax move with the network and the subnet
    // length; naming them too would only bury the key the operator changed.
    const [network, subnetLen] = family.fields;
    const structural = changed.some((c) => c.key === network.key || c.key === subnetLen.key);
    changes.push(...(structural ? changed.filter((c) => c.key === network.key || c.key === subnetLen.key) : changed));
  }
  return changes;
}

function showPlanValue(v: IP | IPNet | number | undefined): string {
  if (v === undefined) return '(unset)';
  return typeof v === 'number' ? String(v) : JSON.stringify(v.toString());
}

// ---- backend ----

/** Backend settings other than Fallback whose values differ (canonically), as the new config spells them. */
export function changedBackendKeys(running: BackendConfig, next: BackendConfig): string[] {
  return settingChanges(running, next).map((c) => c.key.slice('Backend.'.length));
}

/** Settings other than Fallback whose canonical values differ, named as the new config spells them. */
function settingChanges(running: BackendConfig, next: BackendConfig): KeyChange[] {
  const spelling = new Map<string, string>();
  for (const key of Object.keys(running.settings)) spelling.set(key.toLowerCase(), key);
  for (const key of Object.keys(next.settings)) spelling.set(key.toLowerCase(), key);
  const changes: KeyChange[] = [];
  for (const [name, key] of [...spelling].sort(([a], [b]) => byCodeUnit(a, b))) {
    if (name === FALLBACK) continue;
    const was = setting(running.settings, name);
    const is = setting(next.settings, name);
    if (!sameValue(canonical(was), canonical(is))) changes.push({ key: `Backend.${key}`, from: showSetting(was), to: showSetting(is) });
  }
  return changes;
}

/**
 * Backend.Fallback in one form: a type name and a type in an object are the
 * same fallback, type names are lower case (as the parser makes them), and
 * an absent or null Fallback is undefined.
 */
function fallbackOf(backend: BackendConfig): Canonical {
  const v = setting(backend.settings, 'Fallback');
  if (typeof v === 'string') return { type: v.toLowerCase() };
  const c = canonical(v);
  if (isRecord(c) && typeof c.type === 'string') return { ...c, type: c.type.toLowerCase() };
  return c;
}

/**
 * A JSON value with object keys lower-cased (of keys equal but for case the
 * last wins, as with `setting()`) and sorted; a null or absent member dropped.
 */
type Canonical = undefined | null | string | number | boolean | Canonical[] | { [key: string]: Canonical };

function canonical(v: unknown): Canonical {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map((item) => canonical(item) ?? null);
  if (typeof v === 'object') {
    const out: { [key: string]: Canonical } = {};
    const keys = Object.keys(v as Record<string, unknown>).map((k) => k.toLowerCase());
    for (const name of [...new Set(keys)].sort()) {
      const value = canonical(setting(v as Record<string, unknown>, name));
      if (value !== undefined) out[name] = value;
    }
    return out;
  }
  return String(v);
}

function isRecord(v: Canonical): v is { [key: string]: Canonical } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sameValue(a: Canonical, b: Canonical): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A setting's value as written, shortened for a one-line message. */
function showSetting(v: unknown): string {
  if (v === undefined || v === null) return '(unset)';
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
