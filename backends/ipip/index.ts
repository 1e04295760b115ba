/**
 * The ipip backend and its `Mode`: `kernel` (the kernel's ipip device, as
 * flanneld), `userspace` (the native userspace datapath, same wire format),
 * or `auto` (the default: kernel when this kernel supports ipip, else
 * userspace). The choice is made once in start(), logged with the reason,
 * and exposed as `mode` for /metrics.
 */
import type { Lease } from '../../lib/subnet';
import type { LinkInfo } from '../../lib/netlink';
import type { AssignedPeers, Backend, BackendContext, BackendCounters, BackendFactory, BackendStart, EnginePeer, LocalNode, PlanInput } from '../backend';
import type { KernelState } from '../kernel-state';
import { BackendUnavailableError } from '../backend';
import { boolSetting, enumSetting } from '../settings';
import type { BackendConfig } from '../../lib/config';
import { BACKEND_ROUTE_PROTOCOL } from '../route-protocols';
import { IPIP_DEVICE, NO_KERNEL_IPIP } from './constants';
import { KernelIpipBackend } from './kernel';
import { UserspaceIpipBackend } from './userspace';

export { IPIP_DEVICE, NO_KERNEL_IPIP } from './constants';

export type IpipMode = 'auto' | 'kernel' | 'userspace';

class IpipBackend implements Backend {
  readonly type = 'ipip';
  private chosen?: KernelIpipBackend | UserspaceIpipBackend;

  constructor(private requested: IpipMode, private directRouting: boolean, private readonly ctx: BackendContext) {}

  get mode(): string {
    return this.chosen?.mode ?? this.requested;
  }

  async start(local: LocalNode): Promise<BackendStart> {
    const { log, netlink } = this.ctx;
    const kernel = () => new KernelIpipBackend(netlink, this.directRouting);
    const userspace = () => new UserspaceIpipBackend(netlink, this.directRouting, this.ctx);
    if (this.requested !== 'auto') {
      const backend = this.requested === 'kernel' ? kernel() : userspace();
      const started = await backend.start(local);
      this.chosen = backend;
      log.info(`ipip backend: ${this.requested} mode, as Backend.Mode asks`);
      return started;
    }
    const existing = await netlink.getLink(IPIP_DEVICE);
    if (existing?.kind === 'tun') {
      const backend = userspace();
      const started = await backend.start(local);
      this.chosen = backend;
      log.info(`ipip backend: userspace mode (Mode auto; adopting the userspace datapath's ${IPIP_DEVICE} from before)`);
      return started;
    }
    const k = kernel();
    try {
      const started = await k.start(local);
      this.chosen = k;
      log.info('ipip backend: kernel mode (Mode auto; this kernel supports ipip)');
      return started;
    } catch (err) {
      if (!(err instanceof BackendUnavailableError) || err.message !== NO_KERNEL_IPIP) throw err;
    }
    const backend = userspace();
    const started = await backend.start(local);
    this.chosen = backend;
    log.info('ipip backend: userspace mode (Mode auto; this kernel has no ipip support, so the userspace datapath carries ipip)');
    return started;
  }

  readonly routeProtocol = BACKEND_ROUTE_PROTOCOL.ipip;

  get usesReach(): boolean {
    return this.directRouting;
  }

  prepare(own: Lease, peers: AssignedPeers): Promise<LinkInfo> {
    return this.started().prepare(own, peers);
  }

  /** Before start (twill diagnose plans without starting), the device found tells the mode. */
  desired(input: PlanInput, peers: AssignedPeers): KernelState {
    const planner = this.chosen ?? (input.device?.kind === 'tun'
      ? new UserspaceIpipBackend(this.ctx.netlink, this.directRouting, this.ctx)
      : new KernelIpipBackend(this.ctx.netlink, this.directRouting));
    return planner.desired(input, peers);
  }

  async setEnginePeers(peers: readonly EnginePeer[]): Promise<void> {
    const chosen = this.started();
    if (chosen instanceof UserspaceIpipBackend) await chosen.setEnginePeers(peers);
  }

  /**
   * Both modes speak the same wire format, so Mode is a local choice; but
   * both need the device `flannel.ipip`, so a running node cannot move
   * between them. A Mode that resolves to the running one (auto included)
   * applies in place, as does DirectRouting (the next reconcile replaces the
   * routes atomically).
   */
  inPlaceRefusal(config: BackendConfig): string | undefined {
    const running = this.started().mode;
    const wanted = settingsOf(config).mode;
    if (wanted === 'auto' || wanted === running) return undefined;
    return `the ipip backend runs in ${running} mode on this node, and Backend.Mode "${wanted}" cannot take over from it live ` +
      `(both modes need the device ${IPIP_DEVICE}); set Backend.Mode to "${running}" or "auto", or migrate to another backend and back`;
  }

  reconfigure(config: BackendConfig): void {
    const chosen = this.started();
    const wanted = settingsOf(config);
    const refusal = this.inPlaceRefusal(config);
    if (refusal) throw new Error(refusal);
    this.requested = wanted.mode;
    this.directRouting = wanted.directRouting;
    chosen.directRouting = wanted.directRouting;
  }

  async counters(): Promise<BackendCounters> {
    const chosen: Backend = this.started();
    return chosen.counters ? chosen.counters() : { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0, drops: 0 };
  }

  async stop(): Promise<void> {
    await this.chosen?.stop();
  }

  async teardown(): Promise<void> {
    await this.chosen?.teardown();
  }

  private started(): KernelIpipBackend | UserspaceIpipBackend {
    if (!this.chosen) throw new Error('ipip backend used before start()');
    return this.chosen;
  }
}

function settingsOf(config: BackendConfig): { mode: IpipMode; directRouting: boolean } {
  return {
    directRouting: boolSetting(config, 'DirectRouting', false),
    mode: enumSetting(config, 'Mode', ['auto', 'kernel', 'userspace'] as const, 'auto'),
  };
}

export const ipipBackend: BackendFactory = {
  type: 'ipip',
  // Both apply in place (reconfigure): Mode only when it resolves to the running mode; the next reconcile replaces routes atomically.
  liveKeys: ['Mode', 'DirectRouting'],
  validate: (config) => {
    settingsOf(config);
  },
  create: (config, ctx) => {
    const s = settingsOf(config);
    return new IpipBackend(s.mode, s.directRouting, ctx);
  },
};
