/**
 * A backend instance: a backend type with the settings that make it
 * distinct on the wire (its identity, e.g. vxlan VNI and Port). Two nodes
 * can talk over a backend only when both terminate the same instance; during
 * a migration between two settings of one type a node terminates both.
 *
 * The instance key names it in one string: the type alone for the default
 * identity (`vxlan`), else the type with its non-default identity settings
 * (`vxlan{Port=4789,VNI=2}`). Keys are what leases are compared by, what
 * `twill status` shows and what `twill migrate` waits for.
 */
import type { BackendConfig } from '../lib/config';
import type { Identity } from './backend';
import { maybeFactory } from './registry';
import { byCodeUnit } from '../lib/order';

export interface Instance {
  readonly type: string;
  readonly identity: Identity;
  readonly key: string;
}

export function instanceKey(type: string, identity: Identity = {}): string {
  const entries = Object.entries(identity).sort(([a], [b]) => byCodeUnit(a, b));
  if (entries.length === 0) return type;
  return `${type}{${entries.map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : String(v)}`).join(',')}}`;
}

/** The instance a (validated) backend config runs. */
export function instanceOf(config: BackendConfig): Instance {
  const identity = maybeFactory(config.type)?.identity?.(config) ?? {};
  return { type: config.type, identity, key: instanceKey(config.type, identity) };
}

/** The type part of an instance key. */
export function typeOfKey(key: string): string {
  const brace = key.indexOf('{');
  return brace < 0 ? key : key.slice(0, brace);
}

/** The identity of an instance key (the inverse of instanceKey). */
export function identityOfKey(key: string): Identity {
  const brace = key.indexOf('{');
  if (brace < 0 || !key.endsWith('}')) return {};
  const out: Record<string, string | number | boolean> = {};
  for (const part of key.slice(brace + 1, -1).split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const raw = part.slice(eq + 1);
    out[part.slice(0, eq)] = raw === 'true' ? true : raw === 'false' ? false : raw.startsWith('"') ? (JSON.parse(raw) as string) : Number(raw);
  }
  return out;
}

/**
 * The instance a lease without TwillBackends terminates: its BackendType
 * with what its BackendData tells (vxlan: the VNI); other identity settings
 * are taken to be the defaults, which twill nodes make true by listing any
 * other identity in TwillBackends.
 */
export function bareLeaseKey(type: string, data: unknown): string {
  return instanceKey(type, maybeFactory(type)?.revealed?.read(data) ?? {});
}

/**
 * A bare lease from a flanneld node run with non-default settings (say
 * vxlan Port 4789) names no identity, so its key reads as the default. When
 * this node runs no instance of that key, the one local instance of the type
 * that agrees with what the lease does tell is the one the peer runs.
 */
export function matchBareKey(key: string, local: readonly string[]): string {
  if (local.includes(key)) return key;
  const type = typeOfKey(key);
  const told = maybeFactory(type)?.revealed?.keys ?? [];
  const theirs = identityOfKey(key);
  const agree = local.filter((k) => typeOfKey(k) === type && told.every((t) => identityOfKey(k)[t] === theirs[t]));
  return agree.length === 1 ? agree[0] : key;
}
