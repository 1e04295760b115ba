/**
 * The agent loop (DESIGN §1): config → interface → backends → lease →
 * subnet.env → watch peers → reconcile, for as long as it runs.
 *
 * Every input — start-up, a lease event, the repair timer, a kernel
 * deletion, a re-acquired lease, a config change — asks the ReconcileLoop
 * for the same call, `backends.reconcile(own, leases, network)`: assign
 * peers to backend instances, let each plan, let the reconciler apply. On
 * shutdown it stops timers and watches and leaves the datapath and the
 * lease in place, so a restart adopts them without dropping a packet.
 */
import { setTimeout as sleep } from 'timers/promises';
import type { NetworkConfig } from '../config';
import type { Log } from '../observe/logger';
import { selectInterface, InterfaceOptions } from '../iface';
import {
  Lease, LeaseAttrs, LeaseEvent, LeaseView, OutOfSubnetsError, PodCidrOutsideNetworkError, SubnetManager,
  readPreviousSubnets, writeSubnetFile,
} from '../subnet';
import { BackendStart, LocalNode, backendsInKernel } from '../../backends';
import { encodeLeaseAttrs } from '../subnet/lease-codec';
import { carriesIPv4, leaseLabel, underlayAddress } from '../subnet/lease';
import { BackendSet } from './backend-set';
import { bgpLearnedCount, bgpSessions, engineCounters, wireguardPeers } from './backend-readout';
import { Netlink, watchNftables } from '../netlink';
import { parseNetworkConfigText, waitForNetworkConfig } from './config-source';
import { ConfigError } from '../config';
import { compareConfigs } from '../config/live-change';
import { BackendUnavailableError, instanceOf, ipv6NotCarriedWarning, liveChangeOptions } from '../../backends';
import type { NetworkConfigWatch } from '../subnet/manager';
import { ReconcileLoop } from './reconcile-loop';
import { MasqController } from './masq-controller';
import { GuardController } from './guard-controller';
import { type GuardPeer, guardPeers } from '../guard/plan';
import { LastResult } from '../last-result';
import type { NatBackend } from '../masq';
import { AgentMetrics } from '../observe/metrics';
import { Readiness } from '../observe/readiness';
import { Backoff } from '../subnet/backoff';
import { KernelEvents } from './kernel-events';
import { EMPTY_REPORT } from '../../backends/reconciler';

const COUNTER_READ_MS = 5000;
const REPAIR_TIMER = 'repair timer';
/**
 * A repair reads the whole kernel at least once in this many repair
 * intervals (a minute by default) even when no notification said anything
 * changed: the notifications are trusted, but not for ever.
 */
const FULL_CHECK_REPAIRS = 12;

export interface AgentOptions {
  readonly interfaces: InterfaceOptions;
  readonly subnetFile: string;
  readonly ipMasq: boolean;
  readonly forwardRules: boolean;
  readonly masqResyncMs: number;
  readonly natBackend: NatBackend;
  readonly repairIntervalMs: number;
  readonly configKey: string;
  /** Filter tunnel traffic to peers and their subnets (lib/guard); false removes the filter. */
  readonly tunnelGuard: boolean;
  /** The wireguard backend's key file; undefined: /run/flannel/wgkey. */
  readonly wireguardKeyFile?: string;
  /** Called once, when the agent is running (the line "twilld running" is logged). */
  readonly onRunning?: () => void;
}

export class Agent {
  private backends?: BackendSet;
  private watcher?: LeaseView;
  private repairTimer?: NodeJS.Timeout;
  private counterTimer?: NodeJS.Timeout;
  private configWatch?: NetworkConfigWatch;
  /** Config changes are applied one at a time, in the order etcd delivered them. */
  private configQueue: Promise<void> = Promise.resolve();
  private running?: { config: NetworkConfig; mtu: number };
  private masq?: MasqController;
  private netlink?: Netlink;
  private reportedSkips = new Set<string>();
  private readonly kernel: KernelEvents;
  private readonly loop = new ReconcileLoop((reason) => this.reconcile(reason));
  private readonly guardedPeers = new LastResult<GuardPeer[]>();
  private readonly guard: GuardController;

  constructor(
    private readonly manager: SubnetManager,
    private readonly opts: AgentOptions,
    private readonly log: Log,
    /** What /metrics and /readyz report; the agent feeds both as it goes. */
    readonly metrics = new AgentMetrics(),
    readonly readiness = new Readiness(),
  ) {
    this.guard = new GuardController({ enabled: opts.tunnelGuard, log, metrics, watchNft: watchNftables });
    this.kernel = new KernelEvents({
      log,
      fullCheckMs: opts.repairIntervalMs * FULL_CHECK_REPAIRS,
      request: (reason) => this.loop.request(reason),
      touches: (change) => this.backends?.touches(change) !== false,
    });
  }

  /** Runs until `signal` aborts; rejects on a fault it cannot wait out. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      const { config, revision } = await waitForNetworkConfig(this.manager, this.opts.configKey, this.log, signal, {
        rejected: () => this.metrics.configRejected(),
      });
      this.metrics.setConfigValid(true);
      const local = this.chooseInterface(config);
      const notCarried = ipv6NotCarriedWarning(config);
      if (notCarried) this.log.warn(notCarried);
      await this.startBackend(config, local);
      const backends = this.backends!;
      const lease = await this.acquire(config, backends.leaseAttrs(), signal);
      const mtu = backends.mtu();
      await this.writeSubnetFile(config, lease, mtu);
      this.running = { config, mtu };
      this.readiness.leaseHeld(true);
      this.readiness.etcdContact(true);
      this.metrics.setEtcdUp(true);
      this.metrics.setLeaseExpiry(this.manager.leaseExpiry());
      await this.watchPeers(config);
      await this.startRepairs(config);
      await this.watchConfig(revision);
      this.log.info('twilld running', { subnet: leaseLabel(lease), backend: backends.primary.type, mode: backends.primary.mode, mtu, backends: backends.keys().join(',') });
      this.opts.onRunning?.();
      await untilAborted(signal);
    } finally {
      await this.shutdown();
    }
  }

  private chooseInterface(config: NetworkConfig): LocalNode {
    const selection = selectInterface({ ...this.opts.interfaces, wantIPv4: config.enableIPv4, wantIPv6: config.enableIPv6 });
    this.log.info('using interface', { iface: selection.iface.name, publicIP: selection.publicIP, publicIPv6: selection.publicIPv6, why: selection.reason });
    return { extIface: selection.iface, publicIP: selection.publicIP, publicIPv6: selection.publicIPv6 };
  }

  /** The configured backend, and any other whose state is still in the kernel (a restart mid-migration). */
  private async startBackend(config: NetworkConfig, local: LocalNode): Promise<BackendStart> {
    const netlink = Netlink.open();
    this.netlink = netlink;
    const backends = new BackendSet({ netlink, log: this.log, local, requestReconcile: (reason) => this.loop.request(reason), wireguardKeyFile: this.opts.wireguardKeyFile });
    this.backends = backends;
    const leftOver = await backendsInKernel(netlink);
    const started = await backends.start(config.backend, leftOver);
    this.metrics.setBackend(backends.primary.type, backends.primary.mode);
    return started;
  }

  /** Every lease change asks for a reconcile. */
  private async watchPeers(config: NetworkConfig): Promise<void> {
    this.watcher = await this.manager.watchLeases(config, {
      onEvents: (events) => {
        this.logLeaseEvents(events);
        this.loop.request('lease events');
      },
      onWarning: (m) => {
        this.log.warn(m);
        if (m.startsWith('skipping lease') || m.startsWith('skipping Node')) this.metrics.leaseSkipped();
      },
      onConnectivity: (up, err) => {
        this.readiness.etcdContact(up);
        this.metrics.setEtcdUp(up);
        if (up) {
          this.metrics.etcdReconnected();
          this.log.info(`${this.manager.store ?? 'etcd'} reachable again; leases re-listed`);
        } else {
          this.metrics.etcdError('watch');
          this.log.warn(`lost contact with ${this.manager.store ?? 'etcd'}; keeping the datapath as it is`, { error: err && this.manager.describeError(err) });
        }
      },
    });
  }

  /** The first reconcile, then the repair timer, kernel deletion events and the NAT rules. */
  private async startRepairs(config: NetworkConfig): Promise<void> {
    // The first reconcile need not wait for the kernel notification socket: it
    // reads the kernel itself, and anything deleted meanwhile it puts back.
    this.loop.request('start-up');
    this.repairTimer = setInterval(() => this.loop.request(REPAIR_TIMER), this.opts.repairIntervalMs);
    this.startCounterReadout();
    await this.kernel.start(this.netlink!);
    this.masq = new MasqController(
      { masquerade: this.opts.ipMasq, forwardRules: this.opts.forwardRules, resyncMs: this.opts.masqResyncMs, backend: this.opts.natBackend },
      () => {
        const own = this.manager.ownLease();
        if (!own) return undefined;
        // Each family's network and this node's subnet of it (flanneld's MasqIP6Rules for IPv6); an IPv6-only network has IPv6 alone.
        const v4 = config.enableIPv4 && config.network && carriesIPv4(own) ? { ipv4: { podNetwork: config.network, nodeSubnet: own.subnet } } : {};
        const v6 = config.enableIPv6 && config.ipv6Network && own.ipv6Subnet ? { ipv6: { podNetwork: config.ipv6Network, nodeSubnet: own.ipv6Subnet } } : {};
        return { ...v4, ...v6 };
      },
      this.log,
    );
    this.masq.start();
  }

  /** A userspace datapath's packet counters reach /metrics every few seconds. */
  private startCounterReadout(): void {
    const backends = this.backends;
    if (!backends) return;
    const read = async () => {
      try {
        const instances = backends.instances();
        for (const [type, c] of await engineCounters(instances)) this.metrics.setDatapathCounters(type, { ...c });
        this.metrics.setWireguardPeers(await wireguardPeers(instances));
        // A BIRD that does not answer has no session up: say so rather than keep the last figures.
        this.metrics.setBgp(await bgpSessions(instances).catch(() => []), await bgpLearnedCount(instances, this.running?.config.network));
      } catch (err) {
        this.log.debug('cannot read the datapath counters', { error: (err as Error).message });
      }
    };
    this.counterTimer = setInterval(() => void read(), COUNTER_READ_MS);
  }

  /** Follows the network config in etcd from the revision it was read at, so no change is missed. */
  private async watchConfig(revision: bigint): Promise<void> {
    this.configWatch = await this.manager.watchNetworkConfig(revision + 1n, {
      onChange: (found) => {
        this.configQueue = this.configQueue
          .then(() => this.applyConfig(found?.text))
          .catch((err: Error) => this.log.error('applying the network config failed', { error: err.message }));
      },
      onWarning: (m) => this.log.warn(`network config watch: ${m}`),
    });
  }

  /**
   * A new network config: a backend change starts a live migration; an
   * invalid config, or a change that cannot be applied to a running
   * cluster, is refused with the reason and the running config stays.
   */
  private async applyConfig(text: string | undefined): Promise<void> {
    const running = this.running;
    const backends = this.backends;
    if (!running || !backends) return;
    const refuse = (message: string, meta?: Record<string, unknown>) => {
      this.log.error(`${message}; keeping the running config (backend ${running.config.backend.type})`, meta);
      this.metrics.configRejected();
    };
    if (text === undefined) return refuse(`the network config ${this.opts.configKey} was deleted${this.manager.store ? '' : ' from etcd'}`);
    let next: NetworkConfig;
    try {
      next = parseNetworkConfigText(text);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.metrics.setConfigValid(false);
      return refuse(`the new network config at ${this.opts.configKey} is invalid: ${err.message}`, { field: err.field });
    }
    this.metrics.setConfigValid(true);
    const change = compareConfigs(running.config, next, liveChangeOptions);
    if (change.kind === 'unchanged') return;
    if (change.kind === 'refused') return refuse(`the new network config cannot be applied: ${change.reason}`);
    for (const w of next.warnings) this.log.warn(`network config: ${w}`);
    try {
      await backends.switchTo(next.backend);
    } catch (err) {
      const why = err instanceof BackendUnavailableError ? err.message : `cannot start it: ${(err as Error).message}`;
      return refuse(`cannot switch to the ${instanceOf(next.backend).key} backend: ${why}`);
    }
    this.running = { ...running, config: next };
    this.metrics.setBackend(backends.primary.type, backends.primary.mode);
    const from = instanceOf(change.from).key;
    const to = instanceOf(change.to).key;
    if (from === to) this.log.info(`${to} backend settings changed; applied in place`, { backends: backends.keys().join(',') });
    else this.log.info(`backend changed from ${from} to ${to}: migrating peer by peer`, { backends: backends.keys().join(',') });
  }

  /** The own lease was re-acquired after a loss: publish its subnet and reconcile. */
  async ownLeaseChanged(lease: Lease, previous: Lease): Promise<void> {
    if (lease.key !== previous.key) this.metrics.subnetChanged();
    this.readiness.leaseHeld(true);
    if (this.running) await this.writeSubnetFile(this.running.config, lease, this.running.mtu);
    this.loop.request('own lease re-acquired');
  }

  /** Acquires the own lease, waiting out etcd faults and a full network (logged once per kind). */
  private async acquire(config: NetworkConfig, attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const previous = await readPreviousSubnets(this.opts.subnetFile, (m) => this.log.warn(m));
    const backoff = new Backoff(1000, 30_000);
    let lastError = '';
    for (;;) {
      signal.throwIfAborted();
      try {
        return await this.manager.acquireLease(config, attrs, previous);
      } catch (err) {
        if (this.manager.isSetupError(err)) throw err;
        const message = (err as Error).message;
        if (message !== lastError) {
          const severe = err instanceof OutOfSubnetsError || err instanceof PodCidrOutsideNetworkError;
          this.log[severe ? 'error' : 'warn'](`cannot acquire a subnet lease: ${message}; retrying`);
          lastError = message;
        }
      }
      await sleep(backoff.next(), undefined, { signal });
    }
  }

  private async writeSubnetFile(config: NetworkConfig, lease: Lease, mtu: number): Promise<void> {
    await writeSubnetFile(this.opts.subnetFile, {
      network: config.enableIPv4 ? config.network : undefined,
      subnet: carriesIPv4(lease) ? lease.subnet : undefined,
      ipv6Network: config.ipv6Network,
      ipv6Subnet: lease.ipv6Subnet,
      mtu,
      ipMasq: this.opts.ipMasq,
    });
    this.log.info('wrote subnet file', { file: this.opts.subnetFile, subnet: leaseLabel(lease) });
  }

  /** Never throws: a failed reconcile is logged and retried by the repair timer. */
  private async reconcile(reason: string): Promise<void> {
    const own = this.manager.ownLease();
    const backends = this.backends;
    if (!own || !backends || !this.watcher || !this.running) return;
    const leases = [...this.watcher.leases().values()];
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const { watch } = this.kernel;
    const mark = watch.mark();
    const reachProblems = await backends.refreshReach(own, leases, mark);
    const inputs = [this.running.config, own, leases, backends.reachVersion];
    // A problem asking the kernel about reachability is reported by a full reconcile.
    const quiet = reason === REPAIR_TIMER && reachProblems.length === 0 && backends.plansFromInputsAlone() && watch.unchanged(inputs);
    // A peer that joined is admitted before its routes exist, so its first packets are not dropped.
    const guarded = this.guardedPeers.get([own, leases], () => guardPeers(own, leases));
    await this.guard.apply(guarded, backends.intakes(), { onlyToAdmit: true });
    try {
      const report = quiet ? EMPTY_REPORT : await backends.reconcile(own, leases, this.running.config.network);
      if (quiet) this.metrics.repairTrusted();
      else {
        if (report.failures.length === 0) watch.verify(mark, inputs);
        else watch.forget();
        this.reportSkips([...reachProblems, ...report.skipped]);
      }
      if (report.changed || report.removed) this.log.info('reconciled', { reason, peers: leases.length - 1, changed: report.changed, removed: report.removed });
      for (const f of report.failures) this.log.warn(`kernel refused a change; will retry: ${f}`);
      await this.guard.apply(guarded, backends.intakes());
      const published = await this.publishBackends(own);
      const ok = report.failures.length === 0 && published;
      this.metrics.observeReconcile(seconds(), ok);
      this.metrics.countKernelChanges(report.changed, report.removed);
      for (const [key, n] of backends.peerCounts()) this.metrics.setPeers(key, n);
      for (const [key, r] of backends.peerRoutes()) {
        this.metrics.setPeerRoutes(key, 'ipv4', r.ipv4);
        this.metrics.setPeerRoutes(key, 'ipv6', r.ipv6);
      }
      await this.updateMtu(backends.mtu());
      this.metrics.setLeaseExpiry(this.manager.leaseExpiry());
      this.readiness.reconciled(ok, ok ? undefined : `${report.failures.length} kernel change(s) refused, first: ${report.failures[0]}`);
    } catch (err) {
      watch.forget();
      this.metrics.observeReconcile(seconds(), false);
      this.readiness.reconciled(false, (err as Error).message);
      this.log.error('reconcile failed; will retry', { reason, error: (err as Error).message });
    }
  }

  /** The lease lists the backends this node terminates now; false when etcd refused (retried next time). */
  private async publishBackends(own: Lease): Promise<boolean> {
    const desired = this.backends!.leaseAttrs();
    if (encodeLeaseAttrs(own.attrs) === encodeLeaseAttrs(desired)) return true;
    try {
      await this.manager.updateLeaseAttrs(desired);
      this.log.info('lease updated: the backends this node terminates changed', { backends: this.backends!.keys().join(','), primary: this.backends!.configuredType });
      return true;
    } catch (err) {
      this.log.warn('cannot update the lease with the backends this node terminates; will retry', { error: (err as Error).message });
      return false;
    }
  }

  /** subnet.env carries the MTU every running backend can carry (it changes when backends come and go). */
  private async updateMtu(mtu: number): Promise<void> {
    const running = this.running;
    const own = this.manager.ownLease();
    if (!running || !own || running.mtu === mtu) return;
    this.running = { ...running, mtu };
    await this.writeSubnetFile(running.config, own, mtu);
  }

  /** One line per lease for a few changes; a count for a burst, so thousands of leases do not flood the log. */
  private logLeaseEvents(events: readonly LeaseEvent[]): void {
    if (events.length <= 10) {
      for (const ev of events) this.log.info(`lease ${ev.type}`, { subnet: leaseLabel(ev.lease), publicIP: underlayAddress(ev.lease.attrs) ?? ev.lease.attrs.publicIP });
      return;
    }
    const count = (t: LeaseEvent['type']) => events.filter((e) => e.type === t).length;
    this.log.info('leases changed', { added: count('added'), changed: count('changed'), removed: count('removed') });
  }

  /** Logs each skipped peer once, not on every reconcile, and again only if it comes back after being fixed. */
  private reportSkips(skipped: readonly string[]): void {
    const now = new Set(skipped);
    for (const s of now) if (!this.reportedSkips.has(s)) this.log.warn(s);
    this.reportedSkips = now;
  }

  private async shutdown(): Promise<void> {
    await this.configWatch?.stop();
    await this.configQueue;
    this.kernel.stop();
    this.guard.stop();
    if (this.repairTimer) clearInterval(this.repairTimer);
    if (this.counterTimer) clearInterval(this.counterTimer);
    await this.masq?.stop();
    await this.loop.stop();
    await this.watcher?.stop();
    await this.manager.close();
    await this.backends?.stop();
    this.netlink?.close();
  }
}

/** Resolves when `signal` aborts — at once if it already has (a signal may arrive during start-up). */
function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
