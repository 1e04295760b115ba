/** The backend implementations this build carries, by type. */
import type { BackendFactory } from './backend';
import { BackendUnavailableError } from './backend';
import { allocBackend } from './alloc';
import { bgpBackend } from './bgp';
import { hostGwBackend } from './host-gw';
import { ipipBackend } from './ipip';
import { udpBackend } from './udp';
import { vxlanBackend } from './vxlan';
import { wireguardBackend } from './wireguard';

const implementations = new Map<string, BackendFactory>(
  [allocBackend, bgpBackend, hostGwBackend, ipipBackend, udpBackend, vxlanBackend, wireguardBackend].map((f) => [f.type, f]),
);

export function backendFactory(type: string): BackendFactory {
  const factory = implementations.get(type);
  if (!factory) {
    const have = [...implementations.keys()].sort().join(', ');
    throw new BackendUnavailableError(type, `backend ${JSON.stringify(type)} is not implemented in this build of twill (available: ${have})`);
  }
  return factory;
}

/** The factory of `type`, or undefined for a type this build lacks (a peer's lease may name one). */
export function maybeFactory(type: string): BackendFactory | undefined {
  return implementations.get(type);
}
