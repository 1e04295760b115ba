/**
 * The backend registry: every type a network config may name, and the
 * implementations this build carries.
 */
import { BackendConfig, ConfigError } from '../lib/config';
import { fallbackConfig } from './assignment';
import { instanceOf } from './instance';
import type { CompareOptions } from '../lib/config/live-change';
import type { Backend, BackendContext } from './backend';
import { backendFactory, maybeFactory } from './registry';

/** Every backend type flanneld's etcd mode knows (configs naming others are refused). */
export const KNOWN_BACKEND_TYPES: readonly string[] = ['alloc', 'bgp', 'host-gw', 'ipip', 'udp', 'vxlan', 'wireguard'];

/**
 * Checks the Backend object of a network config, its Fallback included;
 * throws ConfigError naming the key (or BackendUnavailableError for a type
 * this build lacks).
 */
export function validateBackendConfig(config: BackendConfig): void {
  backendFactory(config.type).validate(config);
  const fallback = fallbackConfig(config);
  if (!fallback) return;
  if (!KNOWN_BACKEND_TYPES.includes(fallback.type)) {
    throw new ConfigError('Backend.Fallback', `Backend.Fallback: ${JSON.stringify(fallback.type)} is not a known backend; known types: ${KNOWN_BACKEND_TYPES.join(', ')}`);
  }
  try {
    backendFactory(fallback.type).validate(fallback);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError('Backend.Fallback', `Backend.Fallback: ${err.message}`);
    throw err;
  }
}

/** Backend keys of `type` that can change on a running node without a migration. */
export function liveBackendKeys(type: string): readonly string[] {
  return maybeFactory(type)?.liveKeys ?? [];
}

/** How agents and `twill migrate` tell a live backend change from a migration (lib/config/live-change.ts). */
export const liveChangeOptions: CompareOptions = {
  liveKeys: liveBackendKeys,
  instanceKey: (backend) => instanceOf(backend).key,
  conflict: (from, to) => maybeFactory(from.type)?.conflict?.(from, to),
};

export function createBackend(config: BackendConfig, ctx: BackendContext): Backend {
  const factory = backendFactory(config.type);
  validateBackendConfig(config);
  return factory.create(config, ctx);
}

export * from './backend';
export * from './assignment';
export * from './instance';
export * from './kernel-state';
export * from './intake';
export { checkIPv6Backends, ipv6NotCarriedWarning, IPV6_BACKENDS } from './ip-families';
export { EMPTY_REPORT, type ReconcileReport } from './reconciler';
export { backendFactory } from './registry';
export { backendsInKernel, type LeftOver } from './footprint';
