/**
 * Keeps the NAT/forward rules in line with the flags and the own lease:
 * installs them at start, re-checks them every resync period (someone may
 * flush them), and removes twill's table when neither is wanted
 * (`--ip-masq=false` after a run with it). With dual stack (an IPv6
 * network and an IPv6 lease) the IPv6 rules are kept the same way, beside
 * the IPv4 ones. Errors are logged once per
 * distinct message, never once per period, and never stop the agent.
 */
import type { MasqNetworks } from '../masq/nftables';
import type { Log } from '../observe/logger';
import { createNatRules, NatBackend, NatRules } from '../masq';

export interface MasqSettings {
  readonly masquerade: boolean;
  readonly forwardRules: boolean;
  readonly resyncMs: number;
  readonly backend: NatBackend;
}

export class MasqController {
  private timer?: NodeJS.Timeout;
  private lastError = '';
  private running?: Promise<void>;

  constructor(
    private readonly settings: MasqSettings,
    private readonly networks: () => { ipv4?: MasqNetworks; ipv6?: MasqNetworks } | undefined,
    private readonly log: Log,
    private readonly nft: NatRules = createNatRules(settings.backend),
  ) {}

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.settings.resyncMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private tick(): void {
    if (this.running) return;
    this.running = this.check().finally(() => {
      this.running = undefined;
    });
  }

  private async check(): Promise<void> {
    const { masquerade, forwardRules } = this.settings;
    try {
      if (!masquerade && !forwardRules) {
        if (await this.nft.remove()) this.log.info('removed twill\'s NAT/forward rules (--ip-masq and --iptables-forward-rules are off)');
      } else {
        const nets = this.networks();
        if (!nets) return;
        if (await this.nft.ensure({ ...nets, masquerade, forwardRules })) {
          this.log.info('installed NAT/forward rules', {
            with: this.nft.kind, masquerade, forwardRules,
            ...(nets.ipv4 ? { podNetwork: nets.ipv4.podNetwork.toString() } : {}),
            ...(nets.ipv6 ? { ipv6Network: nets.ipv6.podNetwork.toString() } : {}),
          });
        }
      }
      this.lastError = '';
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.lastError) this.log.warn(message);
      this.lastError = message;
    }
  }
}
