/**
 * wireguard-go, the userspace WireGuard engine, run and supervised by
 * twilld where the kernel has no WireGuard.
 *
 * One runs per WireGuard device (`flannel-wg`, and `flannel-wg-v6` in dual
 * stack with Mode separate) in each network namespace. It is started through twill-wg-run (native/private-run.c), which gives it a
 * socket directory of its own: /run/twill/wireguard-<netns inode>, seen by
 * wireguard-go as /var/run/wireguard. twilld, `twill status` and `twill
 * diagnose` all find the UAPI socket there (`socketPathFor`).
 *
 * Failure semantics:
 * - `ensure` resolves once a wireguard-go answers on the socket: the one
 *   already running (started by an earlier twilld: adopted as it runs, so a
 *   restart of twilld costs no packet), or a new one. One that does not
 *   answer while its process lives is killed and replaced. It rejects with
 *   WireguardEngineError when wireguard-go cannot start (the message has the
 *   tail of its log); the next reconcile tries again.
 * - When a wireguard-go started here exits, the log says so and a reconcile
 *   is asked for, whose `ensure` starts a new one (its TUN is new: the plan
 *   puts the address and routes back). One adopted from an earlier twilld is
 *   checked by the same `ensure` on every reconcile (the repair interval, or
 *   at once as its TUN goes), which says so the same way when it is gone.
 * - `detach` leaves it running (twilld stops, the next one adopts it);
 *   `destroy` ends it, by the PID twilld recorded, which takes its TUN, its
 *   routes and its socket with it.
 */
import { spawn, type ChildProcess } from 'child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'fs';
import * as path from 'path';
import type { Log } from '../../lib/observe/logger';
import { getDevice, setDevice, type DeviceState } from './uapi';
import { killAndWait } from '../daemon-process';
import { commandName, running } from '../../lib/process-state';
import { findNativeBuild } from '../../lib/native-build';
import { findOnPath } from '../../lib/which';

export const RUN_DIR = '/run/twill';
const START_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 3000;
const ALIVE_TIMEOUT_MS = 2000;

export class WireguardEngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireguardEngineError';
  }
}

/** The directory of this network namespace's wireguard-go: its socket, PID file and log. */
export function runDirFor(netnsPath = '/proc/self/ns/net'): string {
  return path.join(RUN_DIR, `wireguard-${statSync(netnsPath).ino}`);
}

export function socketPathFor(device: string, netnsPath?: string): string {
  return path.join(runDirFor(netnsPath), `${device}.sock`);
}

/** wireguard-go on the PATH (Debian's package puts it in /usr/bin). */
export function findWireguardGo(): string | undefined {
  return findOnPath('wireguard-go');
}

/** twill-wg-run, built beside twill-dataplane. */
export function findLauncher(): string | undefined {
  return findNativeBuild('twill-wg-run');
}

/** Why wireguard-go cannot run here (what to install); undefined when it can. */
export function engineMissing(): string | undefined {
  if (!findWireguardGo()) return 'wireguard-go is not installed (Debian/Ubuntu: apt-get install wireguard-go; or run cmd/install-deps.sh)';
  if (!findLauncher()) return 'twill-wg-run is not built (no build/Release/twill-wg-run): run "npm ci" or "npm run build:native"';
  return undefined;
}

export interface EngineOptions {
  readonly device: string;
  readonly log: Log;
  /** Asked for when a wireguard-go started here exits. */
  readonly requestReconcile?: (reason: string) => void;
}

export class WireguardEngine {
  readonly dir: string;
  readonly socketPath: string;
  private child?: ChildProcess;
  /** Found running (an earlier twilld started it), already logged as adopted. */
  private adopted = false;
  private stopping = false;

  constructor(private readonly opts: EngineOptions) {
    this.dir = runDirFor();
    this.socketPath = path.join(this.dir, `${opts.device}.sock`);
  }

  /** `flannel-wg` keeps the names of a build with one device, so that a wireguard-go it started is adopted. */
  private get pidFile(): string {
    return path.join(this.dir, this.opts.device === 'flannel-wg' ? 'wireguard-go.pid' : `${this.opts.device}.pid`);
  }

  private get logFile(): string {
    return path.join(this.dir, this.opts.device === 'flannel-wg' ? 'wireguard-go.log' : `${this.opts.device}.log`);
  }

  /** The PID of the running wireguard-go, when it is known and alive. */
  pid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    // A recycled PID is not ours: only a wireguard-go counts, and not one that has exited and waits to be reaped.
    return commandName(pid) === 'wireguard-go' && running(pid) ? pid : undefined;
  }

  /** Adopts the running wireguard-go or starts one; resolves with which. */
  async ensure(): Promise<'running' | 'adopted' | 'started'> {
    this.stopping = false;
    if (await this.answers()) {
      if (this.child || this.adopted) return 'running';
      this.adopted = true;
      this.opts.log.info('wireguard-go adopted (it kept forwarding)', { device: this.opts.device, pid: this.pid(), socket: this.socketPath });
      return 'adopted';
    }
    const stale = this.pid();
    if (stale !== undefined) {
      this.opts.log.warn('wireguard-go does not answer on its socket; killing it', { pid: stale, socket: this.socketPath });
      await killAndWait(stale, STOP_TIMEOUT_MS);
    } else if (this.child || this.adopted) {
      // Gone before its exit reached this process: one adopted is not our child, and
      // a reconcile (the TUN's removal runs one) can come before the exit event.
      this.opts.log.error('wireguard-go exited; starting a new one', { device: this.opts.device, how: 'found gone', log: this.logTail() });
    }
    this.child = undefined;
    this.adopted = false;
    await this.start();
    return 'started';
  }

  async state(): Promise<DeviceState> {
    return getDevice(this.socketPath);
  }

  async configure(lines: readonly string[]): Promise<void> {
    await setDevice(this.socketPath, lines);
  }

  /** twilld stops: wireguard-go keeps forwarding for the next twilld. */
  detach(): void {
    this.stopping = true;
    this.child = undefined;
  }

  /** Ends wireguard-go (its TUN goes with it) and removes its files, and the directory once no other device's are left. */
  async destroy(): Promise<void> {
    this.stopping = true;
    const pid = this.child?.pid ?? this.pid();
    this.child = undefined;
    if (pid !== undefined) await killAndWait(pid, STOP_TIMEOUT_MS);
    for (const f of [this.socketPath, this.pidFile, this.logFile]) rmSync(f, { force: true });
    try {
      rmdirSync(this.dir);
    } catch {
      // another device's wireguard-go still has its files here, or the directory is gone
    }
    if (pid !== undefined) this.opts.log.info('wireguard-go stopped', { device: this.opts.device, pid });
  }

  private async answers(): Promise<boolean> {
    if (!existsSync(this.socketPath)) return false;
    try {
      await getDevice(this.socketPath, ALIVE_TIMEOUT_MS);
      return true;
    } catch {
      return false;
    }
  }

  private async start(): Promise<void> {
    const program = findWireguardGo();
    const launcher = findLauncher();
    if (!program || !launcher) throw new WireguardEngineError(`cannot start wireguard-go: ${engineMissing()}`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const log = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      // Detached, with its output in a file: it must outlive twilld (a restart keeps the datapath) and
      // never write to a pipe whose reader is gone (Go exits on SIGPIPE from stdout/stderr).
      child = spawn(launcher, [this.dir, program, '-f', this.opts.device], {
        detached: true,
        stdio: ['ignore', log, log],
        env: {
          ...process.env,
          WG_PROCESS_FOREGROUND: '1',
          // Older wireguard-go refuses to start on Linux without this (it would rather the kernel did WireGuard).
          WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1',
          LOG_LEVEL: process.env.LOG_LEVEL ?? 'error',
        },
      });
    } finally {
      closeSync(log);
    }
    const exited = new Promise<string>((resolve) => {
      child.once('error', (err) => resolve(err.message));
      child.once('exit', (code, signal) => resolve(signal ? `killed by ${signal}` : `exit code ${code}`));
    });
    child.unref();
    this.child = child;
    this.adopted = false;
    if (child.pid !== undefined) writeFileSync(this.pidFile, `${child.pid}\n`);
    void exited.then((how) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.stopping) return;
      this.opts.log.error('wireguard-go exited; starting a new one', { device: this.opts.device, pid: child.pid, how, log: this.logTail() });
      this.opts.requestReconcile?.('wireguard-go exited');
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    let early: string | undefined;
    void exited.then((how) => (early = how));
    while (Date.now() < deadline) {
      if (early !== undefined) throw new WireguardEngineError(`wireguard-go did not start (${early}): ${this.logTail() || 'no output'}`);
      if (await this.answers()) {
        this.opts.log.info('wireguard-go started', { device: this.opts.device, pid: child.pid, socket: this.socketPath });
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (child.pid !== undefined) await killAndWait(child.pid, STOP_TIMEOUT_MS);
    throw new WireguardEngineError(`wireguard-go did not open ${this.socketPath} within ${START_TIMEOUT_MS} ms: ${this.logTail() || 'no output'}`);
  }

  private logTail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '';
    }
  }
}
