/**
 * What the udp backend and userspace ipip share: a TUN device and the
 * native engine behind it. The engine's peer table is part of the plan
 * (`engineTable`, pure); `prepare` starts the engine with it, the
 * reconciler hands it over on every reconcile. `stop` leaves the engine
 * forwarding for the next twilld; `teardown` ends it and removes the TUN.
 */
import type { Lease } from '../../lib/subnet';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import type { AssignedPeers, Backend, BackendCounters, BackendStart, EnginePeer, LocalNode, PlanInput } from '../backend';
import type { KernelState } from '../kernel-state';
import { UserspaceTunnel, type TunnelOptions } from './tunnel';

export abstract class TunnelBackend implements Backend {
  abstract readonly type: string;
  abstract readonly usesReach: boolean;
  readonly mode = 'userspace';
  protected readonly tunnel: UserspaceTunnel;

  /** udp: the port every peer listens on, sent with each entry; ipip: none. */
  private readonly peerPort?: number;

  constructor(protected readonly nl: Netlink, readonly routeProtocol: number, tunnel: TunnelOptions) {
    this.tunnel = new UserspaceTunnel(tunnel);
    this.peerPort = tunnel.port;
  }

  abstract start(local: LocalNode): Promise<BackendStart>;
  abstract desired(input: PlanInput, peers: AssignedPeers): KernelState;

  /**
   * The engine's peer table (pure; part of `desired`): every usable peer, not
   * only the ones routed here. Only routed traffic enters the TUN, so the
   * extra entries send nothing of their own, and they are needed: the engine
   * takes packets only from peers in its table (a peer that has just turned
   * to this backend may send before its new lease reaches this node);
   * leaving peers stay until their new backend's route covers them; and
   * packets still queued in the TUN when a peer's route moved to another
   * backend are sent on instead of being answered "unreachable".
   */
  protected engineTable(own: Lease, peers: AssignedPeers): EnginePeer[] {
    const table = new Map<string, EnginePeer>();
    for (const p of [...peers.known, ...peers.leaving, ...peers.carried]) {
      if (p.publicIP === own.attrs.publicIP) continue;
      const subnet = p.subnet.toString();
      table.set(subnet, { subnet, publicIP: p.publicIP, ...(this.peerPort !== undefined ? { port: this.peerPort } : {}) });
    }
    return [...table.values()];
  }

  prepare(own: Lease, peers: AssignedPeers): Promise<LinkInfo> {
    return this.tunnel.prepare(own, this.engineTable(own, peers));
  }

  setEnginePeers(peers: readonly EnginePeer[]): Promise<void> {
    return this.tunnel.setPeers(peers);
  }

  counters(): Promise<BackendCounters> {
    return this.tunnel.counters();
  }

  async stop(): Promise<void> {
    await this.tunnel.stop();
  }

  async teardown(): Promise<void> {
    await this.tunnel.destroy();
  }
}

/** The TUN holds exactly `<own subnet IP>/32`. */
export function tunDevice(input: PlanInput): KernelState['devices'] {
  const link = input.device;
  if (!link) throw new Error('a userspace backend planned without its TUN device');
  return [{ name: link.name, ifindex: link.index, addresses: [`${input.own.subnet.ip.toString()}/32`] }];
}
