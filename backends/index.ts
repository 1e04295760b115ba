/**
 * The backend registry: every type a network config may name, and the
 * implementations this build carries.
 */
import type { BackendConfig } from '../lib/config';
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

export function createBackend(config: BackendConfig, ctx: BackendContext): Backend {
  const factory = backendFactory(config.type);
  factory.validate(config);
  return factory.create(config, ctx);
}

export * from './backend';
