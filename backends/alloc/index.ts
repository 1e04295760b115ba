/**
 * `alloc`: leases a subnet and publishes it, with no datapath. flanneld has
 * the same backend; it is useful where something else routes pod traffic.
 * Its lease value is the same as udp's: `{"PublicIP":"…","PublicIPv6":null}`.
 */
import type { Backend, BackendFactory, BackendStart, LocalNode } from '../backend';
import type { KernelState } from '../kernel-state';

class AllocBackend implements Backend {
  readonly type = 'alloc';
  readonly mode = 'none';
  readonly usesReach = false;

  async start(local: LocalNode): Promise<BackendStart> {
    return { mtu: local.extIface.mtu };
  }

  async prepare(): Promise<undefined> {
    return undefined;
  }

  desired(): KernelState {
    return { routes: [], devices: [], keepRoutes: [], skipped: [] };
  }

  async stop(): Promise<void> {}

  async teardown(): Promise<void> {}
}

export const allocBackend: BackendFactory = {
  type: 'alloc',
  validate() {},
  create: () => new AllocBackend(),
};
