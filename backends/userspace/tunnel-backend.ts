/**
 * What the udp backend and userspace ipip share beyond the tunnel itself:
 * counters from the engine, a stop that leaves the datapath to the next
 * twilld, and a teardown that removes the backend's routes, then the TUN.
 */
import type { Lease } from '../../lib/subnet';
import type { Netlink } from '../../lib/netlink';
import type { Backend, BackendCounters, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from '../backend';
import { deleteRoutesOf } from '../apply-plan';
import { UserspaceTunnel, type TunnelOptions } from './tunnel';

export abstract class TunnelBackend implements Backend {
  abstract readonly type: string;
  readonly mode = 'userspace';
  protected readonly tunnel: UserspaceTunnel;

  constructor(protected readonly nl: Netlink, protected readonly protocol: number, tunnel: TunnelOptions) {
    this.tunnel = new UserspaceTunnel(tunnel);
  }

  abstract start(local: LocalNode): Promise<BackendStart>;
  abstract reconcile(own: Lease, peers: readonly Lease[], opts?: ReconcileOptions): Promise<ReconcileReport>;

  counters(): Promise<BackendCounters> {
    return this.tunnel.counters();
  }

  async stop(): Promise<void> {
    await this.tunnel.stop();
  }

  async teardown(): Promise<void> {
    await deleteRoutesOf(this.nl, this.protocol);
    await this.tunnel.destroy();
  }
}
