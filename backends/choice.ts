/**
 * Which backend carries traffic between two nodes (DESIGN §5, live
 * migration and per-peer choice). Every agent, `twill status` and
 * `twill migrate` use these functions, so what the CLI shows is what the
 * agents do.
 *
 * Backends are named by instance key (backends/instance.ts): the type, plus
 * the settings that tell two of one type apart on the wire. A node
 * terminates the backends its lease lists in `TwillBackends`, or else its
 * `BackendType` (absent: udp, as flanneld publishes udp leases). Between
 * two nodes the first backend of the preference order — the configured
 * `Backend.Type`, then its `Fallback` — that both terminate and that can
 * reach the peer is used; failing that, any other both terminate (the
 * state in the middle of a migration), in the order the local node lists
 * them.
 */
import { BackendConfig, ConfigError, setting } from '../lib/config';
import type { BackendAdvert, LeaseAttrs } from '../lib/subnet';
import { bareLeaseKey, instanceKey, instanceOf, matchBareKey, typeOfKey } from './instance';

/** flanneld's lease for udp and alloc carries no BackendType. */
export function primaryBackendType(attrs: LeaseAttrs): string {
  return attrs.backendType ?? 'udp';
}

/** The instance key of one TwillBackends entry. */
export function advertKey(advert: BackendAdvert): string {
  return instanceKey(advert.type, advert.settings);
}

/**
 * Every backend instance the lease's node terminates (instance keys, see
 * backends/instance.ts), its primary one first: the TwillBackends entries
 * when the lease lists them (twill lists every instance there, the primary
 * included), else the BackendType with what its BackendData tells. With
 * `local` (the instances this node runs), a bare lease is matched to the
 * local instance it must be (matchBareKey).
 */
export function terminatedBy(attrs: LeaseAttrs, local?: readonly string[]): string[] {
  if (attrs.backends && attrs.backends.length > 0) return [...new Set(attrs.backends.map(advertKey))];
  const key = bareLeaseKey(primaryBackendType(attrs), attrs.backendData);
  return [local ? matchBareKey(key, local) : key];
}

/** What a node publishes about one backend instance it terminates (BackendData, e.g. the VTEP MAC). */
export function backendDataOf(attrs: LeaseAttrs, key: string): unknown {
  if (attrs.backends && attrs.backends.length > 0) return attrs.backends.find((b) => advertKey(b) === key)?.data;
  return primaryBackendType(attrs) === typeOfKey(key) ? attrs.backendData : undefined;
}

/** `Backend.Fallback`: a type name or a backend object (`{"Type": "vxlan", "VNI": 2}`); undefined when absent. */
export function fallbackConfig(config: BackendConfig): BackendConfig | undefined {
  const v = setting(config.settings, 'Fallback');
  if (v === undefined || v === null) return undefined;
  let fallback: BackendConfig;
  if (typeof v === 'string') {
    fallback = { type: v.toLowerCase(), settings: {} };
  } else if (typeof v === 'object' && !Array.isArray(v)) {
    const obj = v as Record<string, unknown>;
    const type = setting(obj, 'Type');
    if (typeof type !== 'string') throw new ConfigError('Backend.Fallback', 'Backend.Fallback: an object needs a "Type" string, e.g. {"Type": "vxlan"}');
    const settings: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(obj)) if (k.toLowerCase() !== 'type') settings[k] = val;
    fallback = { type: type.toLowerCase(), settings };
  } else {
    throw new ConfigError('Backend.Fallback', `Backend.Fallback: ${JSON.stringify(v)} is not a backend type or a backend object`);
  }
  if (fallback.type === config.type) throw new ConfigError('Backend.Fallback', `Backend.Fallback: "${fallback.type}" is the backend itself; name a different one`);
  if (setting(fallback.settings, 'Fallback') !== undefined) throw new ConfigError('Backend.Fallback', 'Backend.Fallback: a fallback cannot have a fallback of its own');
  return fallback;
}

/** The backend config itself, without its Fallback: what one backend instance runs. */
export function withoutFallback(config: BackendConfig): BackendConfig {
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config.settings)) if (k.toLowerCase() !== 'fallback') settings[k] = v;
  return { type: config.type, settings };
}

/** The configured preference as instance keys: Backend.Type (with its settings), then its Fallback. */
export function preferenceOrder(config: BackendConfig): string[] {
  const fallback = fallbackConfig(config);
  return fallback ? [instanceOf(config).key, instanceOf(fallback).key] : [instanceOf(config).key];
}

/**
 * The backend instance that carries traffic from a node terminating `local`
 * to a peer terminating `remote` (instance keys), or undefined when they
 * share none. `usable(key)` says whether the peer can be reached over that
 * backend from here (host-gw: only on the same link).
 */
export function chooseBackend(
  order: readonly string[],
  local: readonly string[],
  remote: readonly string[],
  usable: (type: string) => boolean = () => true,
): string | undefined {
  const shared = (t: string) => local.includes(t) && remote.includes(t) && usable(t);
  return order.find(shared) ?? local.find((t) => !order.includes(t) && shared(t));
}
