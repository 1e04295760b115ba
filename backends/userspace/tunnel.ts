/**
 * What the udp backend and userspace ipip share: one EngineSupervisor and
 * its TUN device, driven level-triggered from reconcile.
 *
 * `check` runs in the backend's start() and refuses early (no /dev/net/tun,
 * engine not built) with a BackendUnavailableError that says what to do.
 * The engine itself starts in the first reconcile, because the ICMP errors
 * it writes come from this node's subnet, which is only known once the lease
 * is held; a later reconcile with a different own subnet restarts it.
 * Each reconcile hands the engine the peer table the backend planned.
 */
import type { Lease } from '../../lib/subnet';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import type { Log } from '../../lib/observe/logger';
import { BackendUnavailableError } from '../backend';
import type { BackendCounters, LocalNode } from '../backend';
import { EngineSupervisor, type DatapathMode, type PeerEntry } from './engine-supervisor';
import { TunUnavailableError, EngineNotBuiltError } from './errors';
import { userspaceDatapathAvailable } from './tun';

/** How long a datapath left behind by a stopping twilld keeps forwarding, waiting for the next one. */
const HANDOVER_GRACE_MS = 5 * 60_000;

export interface TunnelOptions {
  /** The backend this tunnel serves, for messages. */
  readonly backendType: string;
  readonly mode: DatapathMode;
  readonly tunName: string;
  /** Bytes of encapsulation: the TUN MTU is the external MTU minus this. */
  readonly overhead: number;
  /** udp: the port to bind and to send to. */
  readonly port?: number;
  /** Kept as the TUN's alias, so a restarting twilld knows which backend the device served (udp: its Port). */
  readonly alias?: string;
  readonly nl: Netlink;
  readonly log: Log;
  readonly requestReconcile?: (reason: string) => void;
}

export class UserspaceTunnel {
  private local?: LocalNode;
  private datapath?: EngineSupervisor;
  private ownSubnet?: string;
  private stopped = false;

  constructor(private readonly opts: TunnelOptions) {}

  /** The TUN MTU; throws BackendUnavailableError when this node cannot run a userspace datapath. */
  check(local: LocalNode): number {
    const available = userspaceDatapathAvailable();
    if (!available.ok) {
      throw new BackendUnavailableError(this.opts.backendType, `the ${this.opts.backendType} backend cannot run: ${available.reason}`);
    }
    this.local = local;
    return local.extIface.mtu - this.opts.overhead;
  }

  /**
   * Starts the engine (with `table`, so an engine taken over from the last
   * twilld never runs without its peers), or restarts it for a new own
   * subnet; resolves with the TUN device.
   */
  async prepare(own: Lease, table: readonly PeerEntry[]): Promise<LinkInfo> {
    const subnet = own.subnet.toString();
    if (this.datapath && this.ownSubnet !== subnet) {
      this.opts.log.info(`${this.opts.backendType}: this node's subnet changed; restarting the userspace datapath`, { from: this.ownSubnet, to: subnet });
      await this.datapath.stop();
      this.datapath = undefined;
    }
    if (!this.datapath) this.datapath = await this.launch(subnet, table);
    const link = await this.opts.nl.getLink(this.opts.tunName);
    if (!link) throw new Error(`${this.opts.tunName} vanished; the userspace datapath recreates it`);
    if (this.opts.alias !== undefined && link.alias !== this.opts.alias) await this.opts.nl.setAlias(link.index, this.opts.alias);
    return link;
  }

  /** Replaces the engine's peer table. */
  async setPeers(table: readonly PeerEntry[]): Promise<void> {
    if (!this.datapath) throw new Error(`${this.opts.backendType}: the userspace datapath is not running`);
    await this.datapath.setPeers(table);
  }

  async counters(): Promise<BackendCounters> {
    const c = await this.datapath?.counters();
    return c ?? { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0, drops: 0 };
  }

  /**
   * twilld is stopping: the engine keeps forwarding for a while so that a
   * restarting twilld takes it over without a gap; the TUN, its address and
   * routes stay in any case.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.datapath?.detach(HANDOVER_GRACE_MS);
    this.datapath = undefined;
  }

  /** Ends the engine and deletes the TUN device. */
  async destroy(): Promise<void> {
    this.stopped = true;
    const dp = this.datapath;
    this.datapath = undefined;
    if (dp) {
      await dp.destroy();
    } else if (await this.opts.nl.getLink(this.opts.tunName)) {
      await this.opts.nl.deleteLink(this.opts.tunName);
    }
  }

  private async launch(ownSubnet: string, peers: readonly PeerEntry[]): Promise<EngineSupervisor> {
    const local = this.local;
    if (!local) throw new Error(`${this.opts.backendType} backend used before start()`);
    if (this.stopped) throw new Error(`${this.opts.backendType}: the userspace datapath was stopped`);
    let dp: EngineSupervisor;
    try {
      dp = await EngineSupervisor.start({
        mode: this.opts.mode,
        tunName: this.opts.tunName,
        localIP: local.extIface.ipv4 ?? local.publicIP,
        port: this.opts.port,
        mtu: local.extIface.mtu - this.opts.overhead,
        ownSubnet,
        peers,
        log: this.opts.log,
      });
    } catch (err) {
      if (err instanceof TunUnavailableError || err instanceof EngineNotBuiltError) {
        throw new BackendUnavailableError(this.opts.backendType, `the ${this.opts.backendType} backend cannot run: ${err.message}`);
      }
      throw err;
    }
    this.ownSubnet = ownSubnet;
    dp.on('restart', (info) => {
      if (info.ifindexChanged) this.opts.requestReconcile?.(`${this.opts.tunName} was recreated`);
    });
    return dp;
  }
}
