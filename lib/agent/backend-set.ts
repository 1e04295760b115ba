/**
 * The backend instances this node runs, and their lifecycle.
 *
 * Normally one runs: the configured one. During a live migration, and with
 * a `Fallback`, several run side by side, each owning its own kernel
 * objects (its devices, its route protocol number). Instances are told apart
 * by key (backends/instance.ts): the type plus the settings peers must
 * match, so a change of vxlan VNI or Port, or of udp Port, is a migration
 * too, with the two instances of one type in two slots.
 *
 * A reconcile is: refresh reachability, assign peers (backends/assignment.ts,
 * pure), then for each instance prepare → plan → reconcile the kernel
 * (backends/reconciler.ts). It runs in two passes so that a peer moving
 * between instances is never without a path: first every instance programs
 * its peers while keeping the entries of peers leaving it (the new route
 * replaces the old one atomically, or — for udp's network route — a more
 * specific one takes over); then the instances that lost peers plan again
 * without them. An instance neither configured nor carrying a peer retires
 * (lib/agent/retirement.ts).
 */
import type { BackendConfig } from '../config';
import type { IPNet } from '../ip';
import type { Lease, LeaseAttrs } from '../subnet';
import type { Log } from '../observe/logger';
import type { Netlink } from '../netlink';
import { changedBackendKeys } from '../config/live-change';
import {
  Backend, BackendStart, InstanceSlot, Intake, LeftOver, LocalNode, Peer,
  backendFactory, createBackend, fallbackConfig, instanceOf, liveBackendKeys, withoutFallback,
} from '../../backends';
import { type Assignment, assignPeers, assignedTo } from '../../backends/assignment';
import { type PeerReadiness, peerReadiness } from '../../backends/readiness';
import { LastResult } from '../last-result';
import { plannedState } from '../../backends/standby';
import { DirectReach, peerPublicIPs } from '../../backends/direct-reach';
import { ReconcileReport, reconcileKernel, removeRoutes } from '../../backends/reconciler';
import { type PeerRoutes, countPeerRoutes } from '../../backends/kernel-state';
import { advertisedInstances, leaseAttrsFor } from './advertisement';
import { RETIRE_MS, RetirementState, retirementStep } from './retirement';

interface Running {
  readonly key: string;
  readonly slot: InstanceSlot;
  readonly config: BackendConfig;
  readonly backend: Backend;
  readonly started: BackendStart;
  /** Found in the kernel at start rather than configured: it runs until no peer uses it. */
  readonly adopted: boolean;
  /** Peers it carried after the last reconcile. */
  carried: readonly Peer[];
  /** What its last plan said it receives (kept when a later plan fails, so the guard never opens on an error). */
  intake: readonly Intake[];
  /** Routes its last plan holds for the peers it carries, per address family. */
  peerRoutes: PeerRoutes;
  retirement: RetirementState;
  /** Planned and applied once: only then is it advertised (advertisement.ts `advertisedInstances`). */
  planned: boolean;
  /** The devices whose addresses and entries its last plan owns. */
  devices?: readonly number[];
}

export interface BackendSetDeps {
  readonly netlink: Netlink;
  readonly log: Log;
  readonly local: LocalNode;
  readonly requestReconcile: (reason: string) => void;
  readonly wireguardKeyFile?: string;
}

export class BackendSet {
  private readonly running = new Map<string, Running>();
  private target!: BackendConfig;
  private order: string[] = [];
  /** Which peers the kernel reaches directly: its route lookup and ARP, not the interface prefix. */
  private readonly direct: DirectReach;
  private retireTimer?: NodeJS.Timeout;
  /** Backends being removed, by key: one configured again starts only once its old self is gone (device, engine). */
  private readonly removing = new Map<string, Promise<void>>();
  private carriedCounts: ReadonlyMap<string, number> = new Map();
  private readonly lastAssignment = new LastResult<Assignment>();

  constructor(private readonly deps: BackendSetDeps) {
    this.direct = new DirectReach(deps.netlink, deps.local.extIface);
  }

  /**
   * Starts the configured backend (and its fallback), then adopts the
   * backends whose state is still in the kernel (`leftOver`): peers may
   * still be sending over them. Resolves with the configured backend's
   * start; rejects when that one cannot run.
   */
  async start(target: BackendConfig, leftOver: readonly LeftOver[]): Promise<BackendStart> {
    const started = await this.startConfigured(target, leftOver);
    for (const found of leftOver) {
      const key = instanceOf(found.config).key;
      const taken = [...this.running.values()].some((r) => r.key === key || (r.config.type === found.config.type && (r.slot === found.slot || found.guessed)));
      if (taken) continue;
      try {
        await this.startOne(found.config, found.slot, true);
        this.deps.log.info(`adopted the ${key} backend still in the kernel; it runs until no peer uses it`);
      } catch (err) {
        this.deps.log.warn(`cannot adopt the ${key} backend found in the kernel`, { error: (err as Error).message });
      }
    }
    return started;
  }

  /** Live migration: starts the new configured backend (and fallback) beside the running ones. */
  async switchTo(target: BackendConfig): Promise<BackendStart> {
    const started = await this.startConfigured(target, [], false);
    this.deps.requestReconcile(`backend changed to ${instanceOf(target).key}`);
    return started;
  }

  get configuredType(): string {
    return this.target.type;
  }

  /** The configured backend, for metrics and logs. */
  get primary(): Backend {
    return this.running.get(this.order[0])!.backend;
  }

  /** Instance keys running now, the preferred first. */
  keys(): string[] {
    const rest = [...this.running.keys()].filter((t) => !this.order.includes(t));
    return [...this.order.filter((t) => this.running.has(t)), ...rest];
  }

  /** The MTU pods can use whichever running backend carries them. */
  mtu(): number {
    return Math.min(...[...this.running.values()].map((r) => r.started.mtu));
  }

  /** What every running instance receives, as its last plan said (the tunnel guard filters these). */
  intakes(): Intake[] {
    return [...this.running.values()].flatMap((r) => r.intake);
  }

  /** Peers each instance carried after the last reconcile. */
  peerCounts(): ReadonlyMap<string, number> {
    return this.carriedCounts;
  }

  /** Per running backend, the routes to its carried peers' subnets, IPv4 and IPv6. */
  peerRoutes(): ReadonlyMap<string, PeerRoutes> {
    return new Map(this.keys().map((k) => [k, this.running.get(k)!.peerRoutes]));
  }

  leaseAttrs(): LeaseAttrs {
    const { configuredType, instances } = advertisedInstances(this.target.type, this.keys().map((k) => {
      const r = this.running.get(k)!;
      return { key: r.key, config: r.config, backendData: r.started.backendData, backendV6Data: r.started.backendV6Data, withdrawn: r.retirement.withdrawnAt !== undefined, planned: r.planned };
    }));
    return leaseAttrsFor(this.deps.local.publicIP, this.deps.local.publicIPv6, configuredType, instances);
  }

  /**
   * Asks the kernel which peers are direct, for host-gw and DirectRouting,
   * before a reconcile plans with the answers (`reachVersion` says whether
   * they changed). `kernelEpoch`: KernelWatch.mark(), so that route answers
   * stand while no notification arrived. Resolves with the problems met,
   * one line each; never rejects.
   */
  async refreshReach(own: Lease, all: readonly Lease[], kernelEpoch: number | undefined): Promise<string[]> {
    if (!this.keys().some((k) => this.running.get(k)!.backend.usesReach)) return [];
    const problems = await this.direct.refresh(peerPublicIPs(own, all), kernelEpoch).catch((err: unknown) => [String(err)]);
    return problems.map((problem) => `reachability: ${problem}`);
  }

  /** Rises when a refresh changed which peers are direct: an input of every plan that uses reachability. */
  get reachVersion(): number {
    return this.direct.version;
  }

  /**
   * Plans and applies with the reachability of the last `refreshReach`.
   * Never throws for one backend's fault: its failure is reported and the others go on.
   */
  async reconcile(own: Lease, all: readonly Lease[], network: IPNet | undefined): Promise<ReconcileReport> {
    const keys = this.keys();
    const skipped: string[] = [];
    const readiness = await peerReadiness(new Map(keys.map((k) => [k, this.running.get(k)!.backend])), network, (key, message) => skipped.push(`${key}: ${message}`));
    const assignment = this.assign(keys, own, all, readiness);
    skipped.push(...assignment.skipped);
    const previous = new Map(keys.map((k) => [k, this.running.get(k)!.carried]));
    const total = { changed: 0, removed: 0, skipped, failures: [] as string[] };
    const pass = async (key: string, withLeaving: boolean): Promise<number> => {
      const run = this.running.get(key)!;
      const peers = assignedTo(assignment, key, withLeaving ? previous : new Map());
      try {
        const device = await run.backend.prepare(own, peers, network);
        const ipv6Device = await run.backend.prepareIPv6?.();
        const siblings = [...this.running.values()].filter((r) => r !== run && r.config.type === run.config.type).length;
        const state = plannedState(run.backend, { local: this.deps.local, own, device, ipv6Device, reach: (ip) => this.direct.isDirect(ip), network, siblings }, peers);
        run.intake = state.intake ?? [];
        run.devices = state.devices.map((d) => d.ifindex);
        run.peerRoutes = countPeerRoutes(state.routes, peers.carried);
        const report = await reconcileKernel(this.deps.netlink, run.backend, state);
        if (report.failures.length === 0) run.planned = true;
        total.changed += report.changed;
        total.removed += report.removed;
        total.skipped.push(...report.skipped);
        total.failures.push(...report.failures);
      } catch (err) {
        total.failures.push(`${key}: ${(err as Error).message}`);
      }
      return peers.leaving.length;
    };
    const lostPeers: string[] = [];
    for (const key of keys) if (await pass(key, true)) lostPeers.push(key);
    for (const key of lostPeers) await pass(key, false);
    for (const key of keys) this.running.get(key)!.carried = assignment.carried.get(key) ?? [];
    this.carriedCounts = new Map(keys.map((k) => [k, assignment.carried.get(k)?.length ?? 0]));
    await this.retireUnused();
    return { ...total, skipped: [...new Set(total.skipped)] };
  }

  /**
   * Whether a reconcile with the same leases, config and reachability
   * (`reachVersion`) plans the same kernel state: one instance, planning
   * from those alone. A userspace engine's table, BGP's routes and
   * WireGuard's sessions are read afresh by every reconcile.
   */
  plansFromInputsAlone(): boolean {
    if (this.running.size !== 1) return false;
    const { backend } = [...this.running.values()][0];
    return !backend.setEnginePeers && !backend.learnedRoutes && !backend.establishedPeers;
  }

  /**
   * Whether kernel changes (the notification socket's summary) may have
   * touched what a running instance owns: any route (another program's
   * `ip route replace` takes the place of one of twill's with no deletion
   * notice, under its own protocol number), or an address or entry of one
   * of its devices. Neighbour churn on other devices (ARP) does not count.
   */
  touches(change: { readonly routeProtocols: readonly number[]; readonly ifindexes: readonly number[] }): boolean {
    if (change.routeProtocols.length > 0) return true;
    for (const { devices } of this.running.values()) {
      // Not planned yet: its devices are not known, so anything may matter.
      if (!devices || devices.some((i) => change.ifindexes.includes(i))) return true;
    }
    return false;
  }

  /**
   * Which instance carries each peer. BGP's routes and WireGuard's sessions
   * are read afresh on every reconcile, so with those the assignment is
   * always made again; otherwise the last one stands while the preference,
   * the running instances, the leases and the reachability answers do.
   */
  private assign(keys: readonly string[], own: Lease, leases: readonly Lease[], readiness: PeerReadiness): Assignment {
    const compute = () => assignPeers({
      order: this.order, running: keys, own, leases,
      reach: (ip) => this.direct.isDirect(ip), whyNotReached: (ip) => this.direct.why(ip),
      ...readiness,
    });
    if (readiness.routed || readiness.established) {
      this.lastAssignment.clear();
      return compute();
    }
    return this.lastAssignment.get([this.order.join('\n'), keys.join('\n'), own, leases, this.direct.version], compute);
  }

  /** The running instances by key, for what they report (lib/agent/backend-readout.ts). */
  instances(): ReadonlyMap<string, Backend> {
    return new Map([...this.running].map(([key, run]) => [key, run.backend]));
  }

  /** Shutdown: every datapath stays in place for the next start to adopt. */
  async stop(): Promise<void> {
    if (this.retireTimer) clearTimeout(this.retireTimer);
    for (const run of this.running.values()) await run.backend.stop().catch(() => undefined);
  }

  /** `planned`: whether new instances may be advertised before their first reconcile (at start-up the lease needs them). */
  private async startConfigured(target: BackendConfig, leftOver: readonly LeftOver[], planned = true): Promise<BackendStart> {
    const fallback = fallbackConfig(target);
    const wanted = (fallback ? [target, withoutFallback(fallback)] : [target]).map((config) => ({ config, key: instanceOf(config).key }));
    for (const { key } of wanted) await this.removing.get(key);
    // Everything is checked before anything changes: a refused config leaves the running backends as they were.
    const slots = new Map<string, InstanceSlot>();
    for (const { config, key } of wanted) {
      const have = this.running.get(key);
      if (have) {
        if (!have.adopted && changedBackendKeys(have.config, config).length) this.checkInPlace(have, config);
        continue;
      }
      slots.set(key, this.freeSlot(config, key, leftOver, wanted.map((w) => w.key)));
    }
    for (const { config, key } of wanted) {
      const have = this.running.get(key);
      if (have && !have.adopted && changedBackendKeys(have.config, config).length) await this.reconfigure(have, config);
    }
    let started: BackendStart | undefined;
    for (const { config, key } of wanted) {
      const run = this.running.get(key) ?? (await this.startOne(config, slots.get(key) ?? 0, false, planned));
      run.retirement = {};
      started ??= run.started;
    }
    this.target = target;
    this.order = wanted.map((w) => w.key);
    return started!;
  }

  /** Throws, saying why, when the running backend cannot take `config`'s settings in place. */
  private checkInPlace(have: Running, config: BackendConfig): void {
    const live = new Set(liveBackendKeys(config.type).map((k) => k.toLowerCase()));
    const differing = changedBackendKeys(have.config, config);
    if (differing.some((k) => !live.has(k.toLowerCase()))) {
      throw new Error(`the ${have.key} backend already runs here with other settings (${differing.join(', ')}) that cannot change in place`);
    }
    const refusal = have.backend.inPlaceRefusal?.(withoutFallback(config));
    if (refusal) throw new Error(refusal);
  }

  /**
   * The slot a new backend of `config`'s type takes: the one its leftover
   * state is in after a restart, else one no running backend of the type
   * holds. At most two of one type run, and only when the kernel lets both
   * hold their sockets at once (backendFactory(type).conflict).
   */
  private freeSlot(config: BackendConfig, key: string, leftOver: readonly LeftOver[], wantedKeys: readonly string[]): InstanceSlot {
    const same = [...this.running.values()].filter((r) => r.config.type === config.type);
    for (const r of same) {
      const why = backendFactory(config.type).conflict?.(r.config, config);
      if (why) throw new Error(why);
    }
    const held = new Set(same.map((r) => r.slot));
    const mine = leftOver.find((l) => instanceOf(l.config).key === key && !held.has(l.slot));
    if (mine) return mine.slot;
    // At start the configured backend leaves the slot of another leftover of its type to that one.
    const others = new Set(leftOver.filter((l) => l.config.type === config.type && !l.guessed && !wantedKeys.includes(instanceOf(l.config).key)).map((l) => l.slot));
    const free = ([0, 1] as const).filter((s) => !held.has(s));
    const slot = free.find((s) => !others.has(s)) ?? free[0];
    if (slot === undefined) {
      const busy = same.map((r) => r.key).join(' and ');
      throw new Error(`${busy} already run here: a migration between two ${config.type} settings is still in progress; ` +
        'wait until it has finished (one of them is retired), then change the settings again');
    }
    return slot;
  }

  /**
   * Settings the backend applies in place (vxlan DirectRouting, MTU,
   * Learning; ipip Mode and DirectRouting): the backend takes them itself,
   * or a new backend object with the new settings adopts the same devices;
   * the next reconcile replaces routes atomically, so nothing is lost.
   */
  private async reconfigure(have: Running, config: BackendConfig): Promise<void> {
    const settings = JSON.stringify(withoutFallback(config).settings);
    if (have.backend.reconfigure) {
      const changed = have.backend.reconfigure(withoutFallback(config));
      // New BackendData (bgp's ASN) reaches the lease on the next reconcile's publish.
      const started = changed ? { ...have.started, backendData: changed.backendData } : have.started;
      this.running.set(have.key, { ...have, config, started });
    } else {
      const backend = this.create(config, have.slot);
      const started = await backend.start(this.deps.local);
      this.running.set(have.key, { ...have, config, backend, started });
    }
    this.deps.log.info(`${have.key} backend: settings changed in place`, { settings });
  }

  private async startOne(config: BackendConfig, slot: InstanceSlot, adopted = false, planned = true): Promise<Running> {
    const backend = this.create(config, slot);
    const started = await backend.start(this.deps.local);
    const key = instanceOf(config).key;
    const run: Running = { key, slot, config, backend, started, adopted, carried: [], intake: [], peerRoutes: { ipv4: 0, ipv6: 0 }, retirement: {}, planned };
    this.running.set(key, run);
    return run;
  }

  private create(config: BackendConfig, slot: InstanceSlot): Backend {
    return createBackend(withoutFallback(config), {
      log: this.deps.log,
      netlink: this.deps.netlink,
      requestReconcile: this.deps.requestReconcile,
      slot,
      ...(this.deps.wireguardKeyFile ? { wireguardKeyFile: this.deps.wireguardKeyFile } : {}),
    });
  }

  private async remove(run: Running): Promise<void> {
    // Not stop(): that would leave a userspace engine running detached, waiting for a next twilld to take it over.
    if (run.backend.routeProtocol !== undefined) await removeRoutes(this.deps.netlink, run.backend.routeProtocol);
    await run.backend.teardown();
  }

  /** Unused, unconfigured backends leave the lease, then the kernel (retirement.ts). */
  private async retireUnused(): Promise<void> {
    const now = Date.now();
    let nextCheck = Infinity;
    for (const [key, run] of [...this.running]) {
      const step = retirementStep(run.retirement, this.order.includes(key) || run.carried.length > 0, now);
      run.retirement = step.state;
      if (step.action === 'keep') {
        if (step.readvertised) this.deps.log.info(`${key} backend: a peer needs it again; advertising it again`);
      } else if (step.action === 'wait') {
        nextCheck = Math.min(nextCheck, step.inMs);
      } else if (step.action === 'withdraw') {
        this.deps.log.info(`${key} backend: no peer uses it; leaving the lease, removing it in ${step.inMs} ms`);
        nextCheck = Math.min(nextCheck, step.inMs);
      } else {
        // Out of `running` before the first await: a config that names this backend again meanwhile
        // starts a new one, once this removal is over (startConfigured waits for it).
        this.running.delete(key);
        const removal = this.remove(run);
        this.removing.set(key, removal.then(() => undefined, () => undefined));
        try {
          await removal;
          this.deps.log.info(`${key} backend removed: its devices, routes and entries are gone`);
        } catch (err) {
          if (!this.running.has(key)) this.running.set(key, run);
          this.deps.log.warn(`${key} backend: removal failed; retrying`, { error: (err as Error).message });
          nextCheck = Math.min(nextCheck, RETIRE_MS);
        } finally {
          this.removing.delete(key);
        }
      }
    }
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = undefined;
    if (nextCheck !== Infinity) {
      this.retireTimer = setTimeout(() => this.deps.requestReconcile('retiring an unused backend'), Math.max(50, nextCheck + 10));
    }
  }
}
