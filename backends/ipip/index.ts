/**
 * The ipip backend and its `Mode`: `kernel` (the kernel's ipip device, as
 * flanneld), `userspace` (the native userspace datapath, same wire format),
 * or `auto` (the default: kernel when this kernel supports ipip, else
 * userspace). The choice is made once in start(), logged with the reason,
 * and exposed as `mode` for /metrics.
 */
import type { Lease } from '../../lib/subnet';
import type { Backend, BackendContext, BackendCounters, BackendFactory, BackendStart, LocalNode, ReconcileOptions, ReconcileReport } from '../backend';
import { BackendUnavailableError } from '../backend';
import { boolSetting, enumSetting } from '../settings';
import type { BackendConfig } from '../../lib/config';
import { IPIP_DEVICE, NO_KERNEL_IPIP } from './constants';
import { KernelIpipBackend } from './kernel';
import { UserspaceIpipBackend } from './userspace';

export { IPIP_DEVICE, NO_KERNEL_IPIP } from './constants';

export type IpipMode = 'auto' | 'kernel' | 'userspace';

class IpipBackend implements Backend {
  readonly type = 'ipip';
  private chosen?: Backend;

  constructor(private readonly requested: IpipMode, private readonly directRouting: boolean, private readonly ctx: BackendContext) {}

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

  reconcile(own: Lease, peers: readonly Lease[], opts?: ReconcileOptions): Promise<ReconcileReport> {
    return this.started().reconcile(own, peers, opts);
  }

  async counters(): Promise<BackendCounters> {
    const c = this.started().counters;
    return c ? c.call(this.chosen) : { rxPackets: 0, txPackets: 0, rxBytes: 0, txBytes: 0, drops: 0 };
  }

  async stop(): Promise<void> {
    await this.chosen?.stop();
  }

  async teardown(): Promise<void> {
    await this.chosen?.teardown();
  }

  private started(): Backend {
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
  validate: (config) => {
    settingsOf(config);
  },
  create: (config, ctx) => {
    const s = settingsOf(config);
    return new IpipBackend(s.mode, s.directRouting, ctx);
  },
};
