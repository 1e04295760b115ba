/**
 * EngineSupervisor: the native packet engine — a TUN device on one side,
 * UDP (flanneld's udp wire format) or raw IP-in-IP (kernel ipip's) on the
 * other — run in its own "datapath host" process and supervised from
 * twilld. The backends that carry pods over it (udp, ipip in userspace mode)
 * own one instance each.
 *
 * Failure semantics:
 * - `start` resolves once the engine runs: TUN created or adopted (it is
 *   persistent), MTU set, device up, socket bound. It rejects with
 *   TunUnavailableError, EngineNotBuiltError, or DatapathStartError whose
 *   `code` says why (EPERM, EADDRINUSE, EBUSY, ENOTUN, …); nothing is left
 *   running then (a TUN it created stays, like every TUN it makes).
 * - When the host dies unexpectedly — a native fault, SIGKILL, the engine
 *   giving up because its TUN was deleted — or stops answering for
 *   HANG_MS, the supervisor logs it, emits 'crash', and starts a new host
 *   with the last peer table: at once the first time, then after a
 *   doubling delay (RESTART_MIN_MS .. RESTART_MAX_MS) while crashes keep
 *   coming within CRASH_WINDOW_MS of each other. 'restart' follows once the
 *   new engine runs with the table; a failed attempt emits
 *   'restart-failed' and is retried with the same backoff until stop().
 *   Addresses and routes on the TUN survive all of this; if the device
 *   itself was deleted, the new one has a new ifindex (`ifindexChanged`).
 * - `setPeers` records the table (a restarted host gets the latest one) and
 *   resolves once the running engine uses it. It rejects with
 *   InvalidPeerError (nothing recorded) or, while no host runs, with
 *   DatapathDownError (recorded, applied on restart).
 * - `counters` never rejects: totals over every host so far; a host that
 *   died counts up to its last report (at most a second old).
 * - `stop` ends the engine and the host; the TUN device, its addresses and
 *   routes stay, so a new start adopts them. `destroy` also deletes the TUN.
 */
import { EventEmitter } from 'events';
import { IP, IPNet } from '../../lib/ip';
import type { Log } from '../../lib/observe/logger';
import { DatapathDownError, EngineNotBuiltError, InvalidPeerError, TunUnavailableError } from './errors';
import { HostProcess } from './host-process';
import { addonCandidates, findAddon, type EngineConfig, type EngineCounters, type EngineInfo } from './native-engine';
import { tunAvailable } from './tun';

export type DatapathMode = 'udp' | 'ipip';

/** flanneld's udp port. */
export const DEFAULT_UDP_PORT = 8285;

export interface EngineSupervisorOptions {
  readonly mode: DatapathMode;
  /** The TUN device, e.g. "flannel0". */
  readonly tunName: string;
  /** The node's external address: the socket binds here. */
  readonly localIP: string;
  /** udp: the port to bind and the default port of peers; default 8285. */
  readonly port?: number;
  /** TUN MTU: external MTU − 28 (udp) or − 20 (ipip). */
  readonly mtu: number;
  /** This node's pod subnet, e.g. "10.244.1.0/24"; its network address is the source of ICMP errors. */
  readonly ownSubnet: string;
  readonly log: Log;
  /** Run the host inside this named network namespace (tests, the lab). Default: twilld's own. */
  readonly netns?: string;
  /** TSO/checksum offload on the TUN and UDP GSO/GRO; default true (each is used only if the kernel agrees). */
  readonly offload?: boolean;
  /** ipip: outer TTL; default 64. */
  readonly outerTtl?: number;
  /** Socket buffers in bytes; default 8 MiB. */
  readonly socketBuffer?: number;
  /** The peer table from the engine's first packet on (default: empty until setPeers). */
  readonly peers?: readonly PeerEntry[];
  /** Allows `injectFault()` (tests only). */
  readonly faultInjection?: boolean;
}

export interface PeerEntry {
  /** The peer's pod subnet, "a.b.c.d/len". */
  readonly subnet: string;
  readonly publicIP: string;
  /** udp: the peer's port; default the local port. */
  readonly port?: number;
}

export interface DatapathCounters {
  /** Inner packets received from peers and written to the TUN. */
  readonly rxPackets: number;
  /** Inner packets sent to peers (a TSO super-packet counts as the packets it was cut into). */
  readonly txPackets: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Dropped for any reason other than "no route": TTL expired, not IPv4, malformed, unknown ipip sender, refused by socket or TUN. */
  readonly drops: number;
  /** Packets for a destination no peer holds (each answered with ICMP net unreachable). */
  readonly noRoute: number;
  readonly icmpSent: number;
  /** Every engine counter, summed over hosts. */
  readonly detail: EngineCounters;
}

export interface CrashInfo {
  readonly pid?: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly reason: string;
  /** Crashes within the current window, this one included. */
  readonly recentCrashes: number;
  /** Delay before the restart attempt. */
  readonly restartInMs: number;
}

export interface RestartInfo {
  readonly pid?: number;
  readonly ifindex: number;
  /** The TUN device is not the one from before (it was deleted): addresses and routes must be put back. */
  readonly ifindexChanged: boolean;
  readonly info: EngineInfo;
}

const START_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const HANG_MS = 10_000;
const RESTART_MIN_MS = 250;
const RESTART_MAX_MS = 10_000;
const CRASH_WINDOW_MS = 60_000;

const ZERO: EngineCounters = {
  txPackets: 0, txBytes: 0, noRoute: 0, icmpSent: 0, ttlExpired: 0, notIpv4: 0, malformedTx: 0, sendErrors: 0, tunReads: 0, superPackets: 0,
  rxPackets: 0, rxBytes: 0, unknownSource: 0, malformedRx: 0, writeErrors: 0, datagrams: 0, tunWrites: 0, merged: 0,
};

export interface EngineSupervisor {
  on(event: 'crash', listener: (info: CrashInfo) => void): this;
  on(event: 'restart', listener: (info: RestartInfo) => void): this;
  on(event: 'restart-failed', listener: (err: Error) => void): this;
  once(event: 'crash', listener: (info: CrashInfo) => void): this;
  once(event: 'restart', listener: (info: RestartInfo) => void): this;
  once(event: 'restart-failed', listener: (err: Error) => void): this;
}

export class EngineSupervisor extends EventEmitter {
  private host: HostProcess | null = null;
  private engineInfo: EngineInfo | null = null;
  private table: number[] = [];
  private tableVersion = 0;
  private base: EngineCounters = { ...ZERO };
  private current: EngineCounters = { ...ZERO };
  private stopped = false;
  private crashes: number[] = [];
  private restartTimer: NodeJS.Timeout | null = null;
  /** A launch in progress (start or restart): shutdown waits for it, so two hosts never hold the TUN. */
  private launching: Promise<void> | null = null;
  private readonly watchdog: NodeJS.Timeout;

  private constructor(private readonly opts: EngineSupervisorOptions, private readonly config: EngineConfig) {
    super();
    this.watchdog = setInterval(() => this.checkHung(), 1000);
    this.watchdog.unref();
  }

  /** Validates the options, forks the host and starts the engine (see the failure semantics above). */
  static async start(opts: EngineSupervisorOptions): Promise<EngineSupervisor> {
    const config = engineConfig(opts);
    const tun = tunAvailable();
    if (!tun.ok) throw new TunUnavailableError(tun.reason!);
    if (!findAddon()) throw new EngineNotBuiltError(addonCandidates());
    const dp = new EngineSupervisor(opts, config);
    if (opts.peers) dp.table = encodePeers(opts.peers, opts.mode === 'udp' ? config.port : 0);
    try {
      await dp.launch();
    } catch (err) {
      dp.stopped = true;
      clearInterval(dp.watchdog);
      throw err;
    }
    opts.log.info('userspace datapath started', { mode: opts.mode, tun: opts.tunName, pid: dp.pid, ...dp.engineInfo });
    if (!dp.info.acceptLocal) {
      opts.log.warn(`could not set net.ipv4.conf.${opts.tunName}.accept_local=1: the kernel will drop the ICMP "net unreachable" errors the datapath writes into ${opts.tunName}`);
    }
    return dp;
  }

  /** PID of the current host process (undefined while restarting or stopped). */
  get pid(): number | undefined {
    return this.host?.pid;
  }

  /** What the current engine runs with: ifindex, offloads, buffer sizes. */
  get info(): EngineInfo {
    return this.engineInfo!;
  }

  get ifindex(): number {
    return this.engineInfo!.ifindex;
  }

  get running(): boolean {
    return this.host !== null && !this.stopped;
  }

  /** Replaces the peer table (see the failure semantics above). */
  async setPeers(peers: readonly PeerEntry[]): Promise<void> {
    const table = encodePeers(peers, this.opts.mode === 'udp' ? this.config.port : 0);
    this.table = table;
    this.tableVersion++;
    if (this.stopped) throw new DatapathDownError('set peers', 'the datapath was stopped');
    if (!this.host) throw new DatapathDownError('set peers', 'the datapath host is restarting; the table is applied once it is back');
    await this.host.request({ op: 'setPeers', table }, REQUEST_TIMEOUT_MS);
  }

  async counters(): Promise<DatapathCounters> {
    const host = this.host;
    if (host) {
      try {
        const c = (await host.request({ op: 'counters' }, REQUEST_TIMEOUT_MS)) as EngineCounters;
        if (this.host === host) this.current = c;
      } catch {
        // dead or restarting: the last report stands
      }
    }
    return summarize(add(this.base, this.current));
  }

  /** Stops the engine and its host; the TUN device, its addresses and routes stay. */
  async stop(): Promise<void> {
    await this.shutdown('stop');
  }

  /**
   * Lets the engine outlive this process for up to `graceMs` (twilld is
   * restarting): it keeps forwarding with the last table until the next
   * start takes it over, so a restart costs a process exit, not an agent
   * start-up. Without a host it is the same as stop().
   */
  async detach(graceMs: number): Promise<void> {
    const host = await this.halt();
    if (!host) return;
    try {
      await host.request({ op: 'detach', graceMs }, STOP_GRACE_MS);
    } catch (err) {
      this.opts.log.warn('userspace datapath: detach failed; stopping it instead', { error: (err as Error).message });
      await this.shutdown('stop');
      return;
    }
    this.retire(host);
    host.release();
    this.opts.log.info('userspace datapath left running for the next twilld to take over', { tun: this.opts.tunName, pid: host.pid, graceMs });
  }

  /** Stops the engine and deletes the TUN device (teardown after a migration, tests). */
  async destroy(): Promise<void> {
    const deleted = await this.shutdown('destroy');
    if (deleted) return;
    const host = HostProcess.spawn({ log: this.opts.log, netns: this.opts.netns });
    try {
      await host.deleteTun(this.opts.tunName, REQUEST_TIMEOUT_MS);
    } finally {
      await host.waitExit(STOP_GRACE_MS);
    }
  }

  /** Tests only (`faultInjection`): makes native code dereference NULL in the host. */
  async injectFault(): Promise<void> {
    if (!this.opts.faultInjection) throw new Error('injectFault needs the faultInjection option');
    await this.host?.request({ op: 'crash' }, REQUEST_TIMEOUT_MS).catch(() => undefined);
  }

  /** No more restarts or watchdog; waits out a launch in progress; the host that runs now, if any. */
  private async halt(): Promise<HostProcess | null> {
    this.stopped = true;
    clearInterval(this.watchdog);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    await this.launching?.catch(() => undefined);
    return this.host;
  }

  /** Resolves true when the host carried out `op` (for destroy: deleted the TUN). */
  private async shutdown(op: 'stop' | 'destroy'): Promise<boolean> {
    const host = await this.halt();
    if (!host) return false;
    let done = false;
    try {
      await host.request({ op }, STOP_GRACE_MS);
      done = true;
    } catch (err) {
      this.opts.log.warn(`userspace datapath: ${op} request failed; killing the host`, { error: (err as Error).message });
    }
    await host.waitExit(STOP_GRACE_MS);
    this.retire(host);
    this.opts.log.info(`userspace datapath ${op === 'stop' ? 'stopped (the TUN device stays)' : 'destroyed'}`, { tun: this.opts.tunName });
    return done;
  }

  /** Forks a host, starts the engine and gives it the current table; sets this.host only when all that worked. */
  private launch(): Promise<void> {
    const launching = this.doLaunch().finally(() => {
      if (this.launching === launching) this.launching = null;
    });
    this.launching = launching;
    return launching;
  }

  private async doLaunch(): Promise<void> {
    const host = HostProcess.spawn({ log: this.opts.log, netns: this.opts.netns });
    host.onCounters = (c) => {
      if (this.host === host) this.current = c;
    };
    try {
      const startedWith = this.tableVersion;
      const info = await host.start(this.config, this.opts.faultInjection ?? false, this.table, START_TIMEOUT_MS);
      // Push until the table the engine holds is the latest (setPeers may run meanwhile and fail: no host yet).
      let pushed = startedWith;
      while (pushed !== this.tableVersion) {
        const version = this.tableVersion;
        if (this.table.length > 0 || version > 0) await host.request({ op: 'setPeers', table: this.table }, REQUEST_TIMEOUT_MS);
        pushed = version;
      }
      if (this.stopped) throw new DatapathDownError('start', 'the datapath was stopped meanwhile');
      this.engineInfo = info;
      this.current = { ...ZERO };
      this.host = host;
      void host.exited.then(() => this.onExit(host));
    } catch (err) {
      host.kill('SIGKILL');
      await host.exited;
      throw err;
    }
  }

  private retire(host: HostProcess): void {
    if (this.host !== host) return;
    this.host = null;
    this.base = add(this.base, this.current);
    this.current = { ...ZERO };
  }

  private onExit(host: HostProcess): void {
    if (this.host !== host) return; // stopped on purpose, or already replaced
    this.retire(host);
    if (this.stopped) return;
    const exit = host.exitedWith!;
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    const delay = this.restartDelay();
    const info: CrashInfo = { pid: host.pid, code: exit.code, signal: exit.signal, reason: host.describeExit(), recentCrashes: this.crashes.length, restartInMs: delay };
    this.opts.log.error('userspace datapath host died; restarting it', { tun: this.opts.tunName, ...info });
    this.emit('crash', info);
    this.scheduleRestart(delay);
  }

  private restartDelay(): number {
    const n = this.crashes.length;
    return n <= 1 ? 0 : Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (n - 2));
  }

  private scheduleRestart(delay: number): void {
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      void this.restart();
    }, delay);
  }

  private async restart(): Promise<void> {
    if (this.stopped) return;
    const before = this.engineInfo?.ifindex;
    try {
      await this.launch();
    } catch (err) {
      if (this.stopped) return;
      this.crashes.push(Date.now());
      const delay = this.restartDelay();
      this.opts.log.error('userspace datapath restart failed; trying again', { tun: this.opts.tunName, error: (err as Error).message, retryInMs: delay });
      this.emit('restart-failed', err as Error);
      this.scheduleRestart(delay);
      return;
    }
    const info = this.engineInfo!;
    const restart: RestartInfo = { pid: this.pid, ifindex: info.ifindex, ifindexChanged: before !== undefined && before !== info.ifindex, info };
    this.opts.log.info('userspace datapath host restarted', { tun: this.opts.tunName, pid: restart.pid, ifindex: info.ifindex, ifindexChanged: restart.ifindexChanged });
    this.emit('restart', restart);
  }

  private checkHung(): void {
    const host = this.host;
    if (!host || this.stopped || Date.now() - host.lastHeard < HANG_MS) return;
    this.opts.log.error('userspace datapath host stopped answering; killing it', { pid: host.pid, silentMs: Date.now() - host.lastHeard });
    host.kill('SIGKILL'); // onExit restarts it
  }
}

/** Checks the options and turns them into the engine's config. */
function engineConfig(opts: EngineSupervisorOptions): EngineConfig {
  const bad = (field: string, value: unknown, expected: string) => new TypeError(`EngineSupervisor options.${field}: ${JSON.stringify(value)} is not ${expected}`);
  if (opts.mode !== 'udp' && opts.mode !== 'ipip') throw bad('mode', opts.mode, '"udp" or "ipip"');
  if (typeof opts.tunName !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(opts.tunName)) throw bad('tunName', opts.tunName, 'a device name of 1..15 letters, digits, "_", "-" or "."');
  try {
    IP.parse(opts.localIP, 4);
  } catch {
    throw bad('localIP', opts.localIP, 'an IPv4 address');
  }
  const port = opts.port ?? DEFAULT_UDP_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad('port', opts.port, 'a port 1..65535');
  if (!Number.isInteger(opts.mtu) || opts.mtu < 68 || opts.mtu > 65535) throw bad('mtu', opts.mtu, 'an MTU 68..65535');
  let gateway: string;
  try {
    gateway = IPNet.parse(opts.ownSubnet, { want: 4, allowHostBits: true }).ip.toString();
  } catch {
    throw bad('ownSubnet', opts.ownSubnet, 'an IPv4 network in CIDR form');
  }
  return {
    mode: opts.mode,
    tunName: opts.tunName,
    localIP: opts.localIP,
    port,
    mtu: opts.mtu,
    gateway,
    offload: opts.offload ?? true,
    outerTtl: opts.outerTtl ?? 64,
    sockbuf: opts.socketBuffer ?? 8 << 20,
  };
}

/** Validates peers and flattens them to [subnet, prefixLen, publicIP, port] quadruples. */
export function encodePeers(peers: readonly PeerEntry[], defaultPort: number): number[] {
  const out: number[] = [];
  peers.forEach((p, i) => {
    let subnet: IPNet;
    let ip: IP;
    try {
      subnet = IPNet.parse(p.subnet, { want: 4 });
    } catch {
      throw new InvalidPeerError(i, 'subnet', p.subnet, 'an IPv4 network in CIDR form with host bits clear');
    }
    try {
      ip = IP.parse(p.publicIP, 4);
    } catch {
      throw new InvalidPeerError(i, 'publicIP', p.publicIP, 'an IPv4 address');
    }
    const port = defaultPort === 0 ? 0 : (p.port ?? defaultPort);
    if (!Number.isInteger(port) || port < 0 || port > 65535 || (defaultPort !== 0 && port === 0)) {
      throw new InvalidPeerError(i, 'port', p.port, 'a port 1..65535');
    }
    out.push(Number(subnet.ip.value), subnet.prefixLen, Number(ip.value), port);
  });
  return out;
}

function add(a: EngineCounters, b: EngineCounters): EngineCounters {
  const out = { ...a };
  for (const k of Object.keys(ZERO) as (keyof EngineCounters)[]) out[k] = (a[k] ?? 0) + (b[k] ?? 0);
  return out;
}

function summarize(c: EngineCounters): DatapathCounters {
  return {
    rxPackets: c.rxPackets,
    txPackets: c.txPackets,
    rxBytes: c.rxBytes,
    txBytes: c.txBytes,
    drops: c.ttlExpired + c.notIpv4 + c.malformedTx + c.sendErrors + c.unknownSource + c.malformedRx + c.writeErrors,
    noRoute: c.noRoute,
    icmpSent: c.icmpSent,
    detail: c,
  };
}
