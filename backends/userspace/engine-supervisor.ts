/**
 * EngineSupervisor: the native packet engine — a TUN device on one side,
 * UDP (flanneld's udp wire format) or raw IP-in-IP (kernel ipip's) on the
 * other — run as its own small program, twill-dataplane (native/main.c, a
 * few MB), and supervised from twilld over the program's Unix socket
 * (control-protocol.ts). The backends that carry pods over it (udp, ipip in
 * userspace mode) own one instance each.
 *
 * Failure semantics:
 * - `start` resolves once the engine runs: TUN created or adopted (it is
 *   persistent), MTU set, device up, socket bound. It rejects with
 *   TunUnavailableError, EngineNotBuiltError, or DatapathStartError whose
 *   `code` says why (EPERM, EADDRINUSE, EBUSY, ENOTUN, …); nothing is left
 *   running then (a TUN it created stays, like every TUN it makes).
 *   One dataplane runs per TUN device and network namespace: `start` first
 *   connects to the socket of one already running there. One that a
 *   stopping twilld detached from is adopted as it runs (same config) or
 *   replaced (another config); one that another twilld runs is refused
 *   (DatapathStartError EBUSY, naming its PID). A socket left by a dead
 *   program is replaced by the new one.
 * - When the program dies unexpectedly — a native fault, SIGKILL, the engine
 *   giving up because its TUN was deleted — or stops answering for
 *   HANG_MS, the supervisor logs it, emits 'crash', and starts a new program
 *   with the last peer table: at once the first time, then after a
 *   doubling delay (RESTART_MIN_MS .. RESTART_MAX_MS) while crashes keep
 *   coming within CRASH_WINDOW_MS of each other. 'restart' follows once the
 *   new engine runs with the table; a failed attempt emits
 *   'restart-failed' and is retried with the same backoff until stop().
 *   Addresses and routes on the TUN survive all of this; if the device
 *   itself was deleted, the new one has a new ifindex (`ifindexChanged`).
 * - `setPeers` records the table (a restarted program gets the latest one)
 *   and resolves once the running engine uses it. It rejects with
 *   InvalidPeerError (nothing recorded) or, while no program runs, with
 *   DatapathDownError (recorded, applied on restart).
 * - `counters` never rejects: totals over every program so far (an adopted
 *   one counts from its own start); one that died counts up to its last
 *   report (at most a second old).
 * - `stop` ends the engine and the program; the TUN device, its addresses
 *   and routes stay, so a new start adopts them. `destroy` also deletes the
 *   TUN. `detach` leaves the program forwarding for the next twilld.
 */
import { EventEmitter } from 'events';
import type { Log } from '../../lib/observe/logger';
import { DatapathDownError, EngineNotBuiltError, TunUnavailableError } from './errors';
import { DataplaneProcess } from './dataplane-process';
import { dataplaneArgs, dataplaneSocketPath, encodeTable, Request } from './control-protocol';
import { endLegacyHost } from './handover';
import { dataplaneCandidates, findDataplane, type EngineConfig, type EngineCounters, type EngineInfo } from './native-engine';
import { tunAvailable } from './tun';
import { addCounters, summarizeCounters, ZERO_COUNTERS, type DatapathCounters } from './engine-counters';
import { DEFAULT_UDP_PORT, encodePeers, engineConfig } from './engine-input';

export { DEFAULT_UDP_PORT, encodePeers };
export type { DatapathCounters };

export type DatapathMode = 'udp' | 'ipip';


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
  /** Run the program inside this named network namespace (tests, the lab). Default: twilld's own. */
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

export interface EngineSupervisor {
  on(event: 'crash', listener: (info: CrashInfo) => void): this;
  on(event: 'restart', listener: (info: RestartInfo) => void): this;
  on(event: 'restart-failed', listener: (err: Error) => void): this;
  once(event: 'crash', listener: (info: CrashInfo) => void): this;
  once(event: 'restart', listener: (info: RestartInfo) => void): this;
  once(event: 'restart-failed', listener: (err: Error) => void): this;
}

export class EngineSupervisor extends EventEmitter {
  private host: DataplaneProcess | null = null;
  private engineInfo: EngineInfo | null = null;
  private table: number[] = [];
  private tableVersion = 0;
  private base: EngineCounters = { ...ZERO_COUNTERS };
  private current: EngineCounters = { ...ZERO_COUNTERS };
  private stopped = false;
  private crashes: number[] = [];
  private restartTimer: NodeJS.Timeout | null = null;
  /** A launch in progress (start or restart): shutdown waits for it, so two programs never hold the TUN. */
  private launching: Promise<void> | null = null;
  private readonly watchdog: NodeJS.Timeout;

  private readonly program: string;
  /** A table was given (option or setPeers): an adopted engine gets it, else it keeps the one it has. */
  private haveTable = false;

  private constructor(private readonly opts: EngineSupervisorOptions, private readonly config: EngineConfig) {
    super();
    this.program = findDataplane()!;
    this.watchdog = setInterval(() => this.checkHung(), 1000);
    this.watchdog.unref();
  }

  /** Validates the options, adopts or starts twill-dataplane (see the failure semantics above). */
  static async start(opts: EngineSupervisorOptions): Promise<EngineSupervisor> {
    const config = engineConfig(opts);
    const tun = tunAvailable();
    if (!tun.ok) throw new TunUnavailableError(tun.reason!);
    if (!findDataplane()) throw new EngineNotBuiltError(dataplaneCandidates());
    const dp = new EngineSupervisor(opts, config);
    if (opts.peers) {
      dp.table = encodePeers(opts.peers, opts.mode === 'udp' ? config.port : 0);
      dp.haveTable = true;
    }
    try {
      await dp.launch();
    } catch (err) {
      dp.stopped = true;
      clearInterval(dp.watchdog);
      throw err;
    }
    opts.log.info(dp.host?.foundRunning ? 'userspace datapath adopted (twill-dataplane kept forwarding)' : 'userspace datapath started', { mode: opts.mode, tun: opts.tunName, pid: dp.pid, ...dp.engineInfo });
    if (!dp.info.acceptLocal) {
      opts.log.warn(`could not set net.ipv4.conf.${opts.tunName}.accept_local=1: the kernel will drop the ICMP "net unreachable" errors the datapath writes into ${opts.tunName}`);
    }
    return dp;
  }

  /** PID of the current twill-dataplane (undefined while restarting or stopped). */
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
    this.haveTable = true;
    if (this.stopped) throw new DatapathDownError('set peers', 'the datapath was stopped');
    if (!this.host) throw new DatapathDownError('set peers', 'twill-dataplane is restarting; the table is applied once it is back');
    await this.host.request(Request.SetPeers, encodeTable(table), REQUEST_TIMEOUT_MS);
  }

  async counters(): Promise<DatapathCounters> {
    const host = this.host;
    if (host) {
      try {
        const c = await host.requestJson<EngineCounters>(Request.Counters, undefined, REQUEST_TIMEOUT_MS);
        if (this.host === host) this.current = c;
      } catch {
        // dead or restarting: the last report stands
      }
    }
    return summarizeCounters(addCounters(this.base, this.current));
  }

  /** Stops the engine and its program; the TUN device, its addresses and routes stay. */
  async stop(): Promise<void> {
    await this.shutdown('stop');
  }

  /**
   * Lets the engine outlive this process for up to `graceMs` (twilld is
   * restarting): it keeps forwarding with the last table until the next
   * start attaches to it, so a restart of twilld costs no packet. Without a
   * program it is the same as stop().
   */
  async detach(graceMs: number): Promise<void> {
    const host = await this.halt();
    if (!host) return;
    try {
      const grace = Buffer.alloc(4);
      grace.writeUInt32LE(Math.min(graceMs, 0xffffffff));
      await host.request(Request.Detach, grace, STOP_GRACE_MS);
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
    await DataplaneProcess.deleteTun(this.program, this.opts.tunName, this.opts.netns, REQUEST_TIMEOUT_MS);
  }

  /** Tests only (`faultInjection`): makes twill-dataplane dereference NULL. */
  async injectFault(): Promise<void> {
    if (!this.opts.faultInjection) throw new Error('injectFault needs the faultInjection option');
    await this.host?.request(Request.Crash, undefined, REQUEST_TIMEOUT_MS).catch(() => undefined);
  }

  /** No more restarts or watchdog; waits out a launch in progress; the program that runs now, if any. */
  private async halt(): Promise<DataplaneProcess | null> {
    this.stopped = true;
    clearInterval(this.watchdog);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    await this.launching?.catch(() => undefined);
    return this.host;
  }

  /** Resolves true when the program carried out `op` (for destroy: deleted the TUN). */
  private async shutdown(op: 'stop' | 'destroy'): Promise<boolean> {
    const host = await this.halt();
    if (!host) return false;
    let done = false;
    try {
      await host.request(op === 'stop' ? Request.Stop : Request.Destroy, undefined, STOP_GRACE_MS);
      done = true;
    } catch (err) {
      this.opts.log.warn(`userspace datapath: ${op} request failed; killing twill-dataplane`, { error: (err as Error).message });
    }
    await host.waitExit(STOP_GRACE_MS);
    this.retire(host);
    this.opts.log.info(`userspace datapath ${op === 'stop' ? 'stopped (the TUN device stays)' : 'destroyed'}`, { tun: this.opts.tunName });
    return done;
  }

  /** Adopts or starts a program and gives it the current table; sets this.host only when all that worked. */
  private launch(): Promise<void> {
    const launching = this.doLaunch().finally(() => {
      if (this.launching === launching) this.launching = null;
    });
    this.launching = launching;
    return launching;
  }

  private async doLaunch(): Promise<void> {
    const startedWith = this.tableVersion;
    const host = (await this.adopt()) ?? (await this.spawn());
    host.onCounters = (c) => {
      if (this.host === host) this.current = c;
    };
    try {
      // Push until the table the engine holds is the latest (setPeers may run meanwhile and fail: no program yet).
      // An adopted engine holds the last twilld's table: it gets ours, if we have one.
      let pushed = host.foundRunning && this.haveTable ? -1 : startedWith;
      while (pushed !== this.tableVersion) {
        const version = this.tableVersion;
        await host.request(Request.SetPeers, encodeTable(this.table), REQUEST_TIMEOUT_MS);
        pushed = version;
      }
      if (this.stopped) throw new DatapathDownError('start', 'the datapath was stopped meanwhile');
      this.engineInfo = host.info;
      this.current = { ...ZERO_COUNTERS };
      this.host = host;
      void host.exited.then(() => this.onExit(host));
    } catch (err) {
      host.kill('SIGKILL');
      await host.exited;
      throw err;
    }
  }

  /**
   * Attaches to the dataplane already running on this TUN (a stopping
   * twilld detached from it): null when there is none, or when it ran
   * another config and was stopped. Rejects (EBUSY) when another twilld runs it.
   */
  private async adopt(): Promise<DataplaneProcess | null> {
    const socketPath = dataplaneSocketPath(this.opts.tunName, this.opts.netns);
    const found = await DataplaneProcess.adopt({ log: this.opts.log, socketPath, args: this.args(), timeoutMs: START_TIMEOUT_MS });
    if (!found || found.adopted) return found;
    this.opts.log.info('the running twill-dataplane has another config; replacing it', { tun: this.opts.tunName, pid: found.pid, differs: found.mismatch });
    await found.request(Request.Stop, undefined, STOP_GRACE_MS).catch(() => undefined);
    await found.waitExit(STOP_GRACE_MS);
    return null;
  }

  private async spawn(): Promise<DataplaneProcess> {
    const go = () => DataplaneProcess.launch({ log: this.opts.log, program: this.program, args: this.args(), table: this.table, netns: this.opts.netns, timeoutMs: START_TIMEOUT_MS });
    try {
      return await go();
    } catch (err) {
      // Upgrading from a twill whose engine ran in a Node.js host: that host may still hold the TUN or the port.
      const code = (err as { code?: unknown }).code;
      if (this.opts.netns || (code !== 'EBUSY' && code !== 'EADDRINUSE') || !(await endLegacyHost(this.opts.tunName))) throw err;
      return go();
    }
  }

  private args(): string[] {
    return dataplaneArgs(this.config, this.opts.faultInjection ?? false);
  }

  private retire(host: DataplaneProcess): void {
    if (this.host !== host) return;
    this.host = null;
    this.base = addCounters(this.base, this.current);
    this.current = { ...ZERO_COUNTERS };
  }

  private onExit(host: DataplaneProcess): void {
    if (this.host !== host) return; // stopped on purpose, or already replaced
    this.retire(host);
    if (this.stopped) return;
    const exit = host.exitedWith!;
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    const delay = this.restartDelay();
    const info: CrashInfo = { pid: host.pid, code: exit.code, signal: exit.signal, reason: host.describeExit(), recentCrashes: this.crashes.length, restartInMs: delay };
    this.opts.log.error('twill-dataplane died; restarting it', { tun: this.opts.tunName, ...info });
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
    this.opts.log.info('twill-dataplane restarted', { tun: this.opts.tunName, pid: restart.pid, ifindex: info.ifindex, ifindexChanged: restart.ifindexChanged });
    this.emit('restart', restart);
  }

  private checkHung(): void {
    const host = this.host;
    if (!host || this.stopped || Date.now() - host.lastHeard < HANG_MS) return;
    this.opts.log.error('twill-dataplane stopped answering; killing it', { pid: host.pid, silentMs: Date.now() - host.lastHeard });
    host.kill('SIGKILL'); // onExit restarts it
  }
}
