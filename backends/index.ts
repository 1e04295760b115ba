/**
 * The backend registry: every type a network config may name, and the
 * implementations this build carries.
 */
import { BackendConfig, ConfigError } from '../lib/config';
import { fallbackConfig } from './choice';
import type { Backend, BackendContext, BackendFactory } from './backend';
import { BackendUnavailableError } from './backend';
import { allocBackend } from './alloc';
import { hostGwBackend } from './host-gw';
import { ipipBackend } from './ipip';
import { udpBackend } from './udp';
import { vxlanBackend } from './vxlan';

/** Every backend type flanneld's etcd mode knows (configs naming others are refused). */
export const KNOWN_BACKEND_TYPES: readonly string[] = ['alloc', 'host-gw', 'ipip', 'udp', 'vxlan'];

const implementations = new Map<string, BackendFactory>(
  [allocBackend, hostGwBackend, ipipBackend, udpBackend, vxlanBackend].map((f) => [f.type, f]),
);

export function backendFactory(type: string): BackendFactory {
  const factory = implementations.get(type);
  if (!factory) {
    const have = [...implementations.keys()].sort().join(', ');
    throw new BackendUnavailableError(type, `backend ${JSON.stringify(type)} is not implemented in this build of twill (available: ${have})`);
  }
  return factory;
}

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
  return implementations.get(type)?.liveKeys ?? [];
}

export function createBackend(config: BackendConfig, ctx: BackendContext): Backend {
  const factory = backendFactory(config.type);
  validateBackendConfig(config);
  return factory.create(config, ctx);
}

export * from './backend';
export * from './choice';
export { backendsInKernel } from './footprint';
