/**
 * The backends this node runs, and which one carries each peer.
 *
 * Normally one backend runs: the configured one. During a live migration,
 * and with a `Fallback`, several run side by side, each owning its own
 * kernel objects (its devices, its route protocol number). Backends are
 * told apart by instance key (backends/instance.ts): the type plus the
 * settings peers must match, so a change of vxlan VNI or Port, or of udp
 * Port, is a migration too, with the two backends of one type in two slots.
 * The lease lists every backend this node terminates (`TwillBackends`),
 * and each peer is carried over the first backend of the preference order
 * both ends terminate (backends/choice.ts).
 *
 * A reconcile runs in two passes so that a peer moving between backends is
 * never without a path: first every backend programs its new peers while
 * keeping the entries of peers that are leaving it (the new backend's route
 * replaces the old one atomically, or — for udp's network route — a more
 * specific one takes over); then the backends that lost peers reconcile
 * again and remove what is left. A backend that is neither configured nor
 * used by any peer for RETIRE_MS leaves the lease; RETIRE_MS later, when
 * peers have stopped sending over it, its kernel objects are removed.
 */
import type { BackendConfig } from '../config';
import type { Lease, LeaseAttrs } from '../subnet';
import type { Log } from '../observe/logger';
import type { Netlink } from '../netlink';
import {
  Backend, BackendCounters, BackendStart, InstanceSlot, LeftOver, LocalNode, ReconcileReport,
  backendFactory, chooseBackend, createBackend, fallbackConfig, instanceOf, leaseViewFor, liveBackendKeys, terminatedBy, typeOfKey,
} from '../../backends';
import { DirectReach } from '../../backends/direct-reach';

/** How long an unused backend stays advertised, then how long it keeps receiving after leaving the lease. */
export const RETIRE_MS = 3000;

interface Running {
  readonly key: string;
  readonly slot: InstanceSlot;
  readonly config: BackendConfig;
  readonly backend: Backend;
  readonly started: BackendStart;
  /** Found in the kernel at start rather than configured: it runs until no peer uses it. */
  readonly adopted: boolean;
  /** Peers it carried after the last reconcile, as leases viewed for this backend. */
  assigned: Map<string, Lease>;
  /** Since when it has carried no peer while not configured. */
  idleSince?: number;
  /** When it left the lease (it still receives until RETIRE_MS later). */
  withdrawnAt?: number;
}

export interface DatapathsDeps {
  readonly netlink: Netlink;
  readonly log: Log;
  readonly local: LocalNode;
  readonly requestReconcile: (reason: string) => void;
}

export interface AssignmentSummary {
  /** Peers carried per backend (instance key). */
  readonly perBackend: ReadonlyMap<string, number>;
}

export class Datapaths {
  private readonly running = new Map<string, Running>();
  private target!: BackendConfig;
  private order: string[] = [];
  /** Which peers host-gw can reach: kernel route lookup and ARP, not the interface prefix. */
  private readonly direct: DirectReach;
  private retireTimer?: NodeJS.Timeout;
  private summary: AssignmentSummary = { perBackend: new Map() };

  constructor(private readonly deps: DatapathsDeps) {
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
    const started = await this.startConfigured(target, []);
    this.deps.requestReconcile(`backend changed to ${instanceOf(target).key}`);
    return started;
  }

  get targetType(): string {
    return this.target.type;
  }

  /** The configured backend, for metrics and logs. */
  get primary(): Backend {
    return this.running.get(this.order[0])!.backend;
  }

  /** Backends (instance keys) running now, the preferred first. */
  types(): string[] {
    const rest = [...this.running.keys()].filter((t) => !this.order.includes(t));
    return [...this.order.filter((t) => this.running.has(t)), ...rest];
  }

  /** The MTU pods can use whichever running backend carries them. */
  mtu(): number {
    return Math.min(...[...this.running.values()].map((r) => r.started.mtu));
  }

  lastAssignment(): AssignmentSummary {
    return this.summary;
  }

  /** What this node publishes: BackendType/BackendData of the configured backend, and TwillBackends while it terminates more than one. */
  leaseAttrs(): LeaseAttrs {
    const primary = this.running.get(this.order[0])!;
    const advertised = this.types().map((k) => this.running.get(k)!).filter((r) => r.withdrawnAt === undefined);
    const type = this.target.type;
    // A lease without TwillBackends is read as the default settings of its type (backends/instance.ts), so any other is listed.
    const listed = advertised.length > 1 || advertised.some((r) => r.key !== r.config.type);
    return {
      publicIP: this.deps.local.publicIP,
      publicIPv6: null,
      backendType: type === 'udp' || type === 'alloc' ? undefined : type,
      backendData: primary.started.backendData,
      backends: listed
        ? advertised.map((r) => {
          const identity = instanceOf(r.config).identity;
          return { type: r.config.type, ...(Object.keys(identity).length ? { settings: identity } : {}), data: r.started.backendData };
        })
        : undefined,
    };
  }

  /** Never throws for one backend's fault: its failure is reported and the others go on. */
  async reconcile(own: Lease, peers: readonly Lease[]): Promise<ReconcileReport> {
    const types = this.types();
    const next = new Map<string, Map<string, Lease>>(types.map((t) => [t, new Map()]));
    const skipped: string[] = [];
    const known = peers.filter((p) => p.key !== own.key);
    if (types.some((t) => typeOfKey(t) === 'host-gw')) {
      const problems = await this.direct.refresh(known.map((p) => p.attrs.publicIP)).catch((err: unknown) => [String(err)]);
      for (const problem of problems) this.deps.log.warn(`host-gw reachability: ${problem}`);
    }
    for (const peer of known) {
      const remote = terminatedBy(peer.attrs, types);
      const type = chooseBackend(this.order, types, remote, (t) => this.reachable(typeOfKey(t), peer));
      if (!type) {
        const offLink = remote.includes('host-gw') && types.includes('host-gw')
          ? `; host-gw cannot reach it (${this.direct.why(peer.attrs.publicIP)}): give host-gw a Fallback (e.g. "Fallback": "vxlan") to carry such peers`
          : ': not reachable until they share a backend';
        skipped.push(`peer ${peer.subnet.toString()} (${peer.attrs.publicIP}) terminates ${remote.join(', ')}; this node runs ${types.join(', ')}${offLink}`);
        continue;
      }
      next.get(type)!.set(peer.key, leaseViewFor(peer, type));
    }

    const total: { changed: number; removed: number; skipped: string[]; failures: string[] } = { changed: 0, removed: 0, skipped, failures: [] };
    const add = (r: ReconcileReport) => {
      total.changed += r.changed;
      total.removed += r.removed;
      total.skipped.push(...r.skipped);
      total.failures.push(...r.failures);
    };
    const movedAway = new Map<string, Lease[]>();
    for (const type of types) {
      const run = this.running.get(type)!;
      const now = next.get(type)!;
      movedAway.set(type, [...run.assigned.values()].filter((p) => !now.has(p.key) && [...next.values()].some((m) => m.has(p.key))));
    }
    const pass = async (type: string, retained: readonly Lease[]) => {
      const run = this.running.get(type)!;
      const siblings = [...this.running.values()].filter((r) => r !== run && r.config.type === run.config.type).length;
      try {
        add(await run.backend.reconcile(own, [...next.get(type)!.values()], { retained, known, siblings }));
      } catch (err) {
        total.failures.push(`${type}: ${(err as Error).message}`);
      }
    };
    for (const type of types) await pass(type, movedAway.get(type)!);
    for (const type of types) if (movedAway.get(type)!.length) await pass(type, []);
    for (const type of types) this.running.get(type)!.assigned = next.get(type)!;
    this.summary = { perBackend: new Map(types.map((t) => [t, next.get(t)!.size])) };
    await this.retireUnused();
    return { ...total, skipped: dedupe(total.skipped) };
  }

  async counters(): Promise<Map<string, BackendCounters>> {
    const out = new Map<string, BackendCounters>();
    for (const [type, run] of this.running) {
      if (run.backend.counters) out.set(type, await run.backend.counters());
    }
    return out;
  }

  /** Shutdown: every datapath stays in place for the next start to adopt. */
  async stop(): Promise<void> {
    if (this.retireTimer) clearTimeout(this.retireTimer);
    for (const run of this.running.values()) await run.backend.stop().catch(() => undefined);
  }

  private async startConfigured(target: BackendConfig, leftOver: readonly LeftOver[]): Promise<BackendStart> {
    const fallback = fallbackConfig(target);
    const wanted = (fallback ? [target, withoutFallback(fallback)] : [target]).map((config) => ({ config, key: instanceOf(config).key }));
    // Everything is checked before anything changes: a refused config leaves the running backends as they were.
    const slots = new Map<string, InstanceSlot>();
    for (const { config, key } of wanted) {
      const have = this.running.get(key);
      if (have) {
        if (!have.adopted && !sameSettings(have.config, config)) this.checkInPlace(have, config);
        continue;
      }
      slots.set(key, this.freeSlot(config, key, leftOver, wanted.map((w) => w.key)));
    }
    for (const { config, key } of wanted) {
      const have = this.running.get(key);
      if (have && !have.adopted && !sameSettings(have.config, config)) await this.reconfigure(have, config);
    }
    let started: BackendStart | undefined;
    for (const { config, key } of wanted) {
      const run = this.running.get(key) ?? (await this.startOne(config, slots.get(key) ?? 0));
      run.idleSince = undefined;
      run.withdrawnAt = undefined;
      started ??= run.started;
    }
    this.target = target;
    this.order = wanted.map((w) => w.key);
    return started!;
  }

  /** Throws, saying why, when the running backend cannot take `config`'s settings in place. */
  private checkInPlace(have: Running, config: BackendConfig): void {
    const live = new Set(liveBackendKeys(config.type).map((k) => k.toLowerCase()));
    const differing = differingKeys(have.config, config);
    if (differing.some((k) => !live.has(k))) {
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
      have.backend.reconfigure(withoutFallback(config));
      this.running.set(have.key, { ...have, config });
    } else {
      const backend = this.create(config, have.slot);
      const started = await backend.start(this.deps.local);
      this.running.set(have.key, { ...have, config, backend, started });
    }
    this.deps.log.info(`${have.key} backend: settings changed in place`, { settings });
  }

  private async startOne(config: BackendConfig, slot: InstanceSlot, adopted = false): Promise<Running> {
    const backend = this.create(config, slot);
    const started = await backend.start(this.deps.local);
    const key = instanceOf(config).key;
    const run: Running = { key, slot, config, backend, started, adopted, assigned: new Map() };
    this.running.set(key, run);
    return run;
  }

  private create(config: BackendConfig, slot: InstanceSlot): Backend {
    return createBackend(withoutFallback(config), {
      log: this.deps.log,
      netlink: this.deps.netlink,
      requestReconcile: this.deps.requestReconcile,
      slot,
    });
  }

  private reachable(type: string, peer: Lease): boolean {
    if (type !== 'host-gw') return true;
    return this.direct.isDirect(peer.attrs.publicIP);
  }

  /** Unused, unconfigured backends leave the lease, then the kernel (see the module comment). */
  private async retireUnused(): Promise<void> {
    const now = Date.now();
    let nextCheck = Infinity;
    for (const [type, run] of [...this.running]) {
      if (this.order.includes(type) || run.assigned.size > 0) {
        if (run.withdrawnAt !== undefined) this.deps.log.info(`${type} backend: a peer needs it again; advertising it again`);
        run.idleSince = undefined;
        run.withdrawnAt = undefined;
        continue;
      }
      run.idleSince ??= now;
      if (run.withdrawnAt === undefined) {
        if (now - run.idleSince >= RETIRE_MS) {
          run.withdrawnAt = now;
          this.deps.log.info(`${type} backend: no peer uses it; leaving the lease, removing it in ${RETIRE_MS} ms`);
          nextCheck = Math.min(nextCheck, RETIRE_MS);
        } else {
          nextCheck = Math.min(nextCheck, run.idleSince + RETIRE_MS - now);
        }
      } else if (now - run.withdrawnAt >= RETIRE_MS) {
        try {
          await run.backend.stop();
          await run.backend.teardown();
          this.running.delete(type);
          this.deps.log.info(`${type} backend removed: its devices, routes and entries are gone`);
        } catch (err) {
          this.deps.log.warn(`${type} backend: removal failed; retrying`, { error: (err as Error).message });
          nextCheck = Math.min(nextCheck, RETIRE_MS);
        }
      } else {
        nextCheck = Math.min(nextCheck, run.withdrawnAt + RETIRE_MS - now);
      }
    }
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = undefined;
    if (nextCheck !== Infinity) {
      this.retireTimer = setTimeout(() => this.deps.requestReconcile('retiring an unused backend'), Math.max(50, nextCheck + 10));
    }
  }
}

function withoutFallback(config: BackendConfig): BackendConfig {
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config.settings)) if (k.toLowerCase() !== 'fallback') settings[k] = v;
  return { type: config.type, settings };
}

function canonical(settings: Readonly<Record<string, unknown>>): string {
  const entries = Object.entries(settings).filter(([k]) => k.toLowerCase() !== 'fallback').map(([k, v]) => [k.toLowerCase(), v] as const);
  return JSON.stringify(entries.sort(([a], [b]) => a.localeCompare(b)));
}

/** Lower-case keys (Fallback aside) whose values differ. */
function differingKeys(a: BackendConfig, b: BackendConfig): string[] {
  const lower = (c: BackendConfig) => new Map(Object.entries(c.settings).filter(([k]) => k.toLowerCase() !== 'fallback').map(([k, v]) => [k.toLowerCase(), JSON.stringify(v)]));
  const x = lower(a);
  const y = lower(b);
  return [...new Set([...x.keys(), ...y.keys()])].filter((k) => x.get(k) !== y.get(k)).sort();
}

function sameSettings(a: BackendConfig, b: BackendConfig): boolean {
  return a.type === b.type && canonical(a.settings) === canonical(b.settings);
}

function dedupe(xs: readonly string[]): string[] {
  return [...new Set(xs)];
}
