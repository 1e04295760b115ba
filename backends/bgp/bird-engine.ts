/**
 * BIRD 2, the BGP daemon of the bgp backend, run and supervised by twilld.
 *
 * One runs per network namespace, in /run/twill/bird-<netns inode>
 * (`birdRunDirFor`): its configuration bird.conf, its control socket
 * bird.ctl, its PID file bird.pid (written and, on a clean exit, removed by
 * BIRD itself) and its log bird.log. twilld, `twill status` and `twill
 * diagnose` all find the socket there (`birdSocketPathFor`).
 *
 * Failure semantics:
 * - `ensure(config)` resolves once a BIRD answers on the socket with
 *   `config` applied: the one already running (started by an earlier
 *   twilld: adopted as it runs, so a twilld restart never touches a BGP
 *   session or a route), or a new one. One whose process lives but does not
 *   answer is killed and replaced. A changed configuration is checked by
 *   BIRD (`configure check`) before it replaces bird.conf, so a refused one
 *   rejects with BirdConfigFileError (file:line:column and BIRD's message)
 *   and leaves the running configuration and bird.conf as they were; the
 *   same config is tried again on the next call; with no BIRD running,
 *   `bird -p` checks it first and no BIRD is started. It rejects with
 *   BirdEngineError when BIRD cannot start (the message has the tail of its
 *   log).
 * - When a BIRD started here exits, the log says so once and a reconcile is
 *   asked for, whose `ensure` starts a new one. A BIRD that did not exit
 *   cleanly (its PID file is left) leaves its routes in the kernel; the new
 *   one starts in graceful restart recovery (`bird -R`), which keeps those
 *   routes until the sessions are back (at most GRACEFUL_RESTART_WAIT_S),
 *   then removes the ones no peer announces any more.
 * - `detach` leaves BIRD running (twilld stops, the next one adopts it).
 *   `destroy` ends it by its PID: on SIGTERM BIRD tells its peers
 *   (Cease, administrative shutdown: they withdraw this node's subnet at
 *   once) and removes the routes it installed (`persist off`) — unless
 *   its kernel protocol has not synced yet (during graceful restart
 *   recovery), or it had to be killed. Whatever it left (protocol `bird`,
 *   12, table main, with the metric of its configuration) is deleted here.
 */
import { execFile, spawn, type ChildProcess } from 'child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'fs';
import * as path from 'path';
import type { Log } from '../../lib/observe/logger';
import { Netlink, RouteTable } from '../../lib/netlink';
import { killAndWait } from '../daemon-process';
import { commandName, running } from '../../lib/process-state';
import { findOnPath } from '../../lib/which';
import { kernelMetricOf } from './bird-config';
import { BirdConfigFileError, BirdControl, CONFIG_FILE_ERROR, birdConfigure, birdConfigureCheck, birdSessions, type BirdSession, type ConfigureOutcome } from './bird-control';

export const RUN_DIR = '/run/twill';
/** rtm_protocol of the routes BIRD installs (RTPROT_BIRD). */
export const BIRD_ROUTE_PROTOCOL = 12;
const START_TIMEOUT_MS = 5000;
/** BIRD sends every peer a Cease and removes its routes before it exits; that takes a moment per peer. */
const STOP_TIMEOUT_MS = 5000;
const ALIVE_TIMEOUT_MS = 2000;
/** The log is started afresh (the old one kept as bird.log.old) beyond this. */
const MAX_LOG_BYTES = 1024 * 1024;

export class BirdEngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BirdEngineError';
  }
}

/** The directory of this network namespace's BIRD: configuration, control socket, PID file and log. */
export function birdRunDirFor(netnsPath = '/proc/self/ns/net'): string {
  return path.join(RUN_DIR, `bird-${statSync(netnsPath).ino}`);
}

export function birdSocketPathFor(netnsPath?: string): string {
  return path.join(birdRunDirFor(netnsPath), 'bird.ctl');
}

/** bird (BIRD 2): $TWILL_BIRD when set (a BIRD installed elsewhere), else on the PATH or in /usr/sbin, where Debian puts it. */
export function findBird(): string | undefined {
  const chosen = process.env.TWILL_BIRD;
  if (chosen) return existsSync(chosen) ? chosen : undefined;
  return findOnPath('bird', ['/usr/sbin', '/usr/local/sbin']);
}

/** Why BIRD cannot run here (what to install); undefined when it can. */
export function birdMissing(): string | undefined {
  if (findBird()) return undefined;
  const chosen = process.env.TWILL_BIRD;
  if (chosen) return `bird (BIRD 2) is not at ${chosen} (TWILL_BIRD); install it (on Debian/Ubuntu: apt-get install bird2) or unset TWILL_BIRD`;
  return 'bird (BIRD 2) is not installed; on Debian/Ubuntu: apt-get install bird2';
}

export interface BirdEngineOptions {
  readonly log: Log;
  /** Asked for when a BIRD started here exits. */
  readonly requestReconcile?: (reason: string) => void;
}

/** What `ensure` did: found BIRD running, adopted one an earlier twilld started, or started one. */
export type EnsureResult = 'running' | 'adopted' | 'started';

/** What `destroy` did. */
export interface DestroyResult {
  /** The BIRD ended, if one ran. */
  readonly pid?: number;
  /** It did not exit on SIGTERM in time and was killed. */
  readonly killed: boolean;
  /** Routes it left in the kernel that were deleted here. */
  readonly routesRemoved: number;
}

export class BirdEngine {
  readonly dir: string;
  readonly socketPath: string;
  private child?: ChildProcess;
  /** Found running (an earlier twilld started it), already logged as adopted. */
  private adopted = false;
  private stopping = false;
  /** The configuration BIRD was last told to load by this object. */
  private applied?: string;
  /** `ensure` calls run one after another: two must never start two BIRDs. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: BirdEngineOptions) {
    this.dir = birdRunDirFor();
    this.socketPath = path.join(this.dir, 'bird.ctl');
  }

  get configFile(): string {
    return path.join(this.dir, 'bird.conf');
  }

  private get candidateFile(): string {
    return path.join(this.dir, 'bird.conf.new');
  }

  private get pidFile(): string {
    return path.join(this.dir, 'bird.pid');
  }

  get logFile(): string {
    return path.join(this.dir, 'bird.log');
  }

  /** The PID of the running BIRD, when it is known and alive. */
  pid(): number | undefined {
    const child = this.child?.pid;
    if (child !== undefined && isBird(child)) return child;
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    return Number.isInteger(pid) && pid > 0 && isBird(pid) ? pid : undefined;
  }

  /** Adopts the running BIRD or starts one, then makes it run `config`. */
  ensure(config: string): Promise<EnsureResult> {
    const run = this.queue.then(() => this.ensureNow(config));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async ensureNow(config: string): Promise<EnsureResult> {
    this.stopping = false;
    let result: EnsureResult;
    if (await this.answers()) {
      result = this.child || this.adopted ? 'running' : 'adopted';
      if (result === 'adopted') {
        this.adopted = true;
        this.opts.log.info('BIRD adopted (its sessions and routes kept)', { pid: this.pid(), socket: this.socketPath });
      }
    } else {
      const stale = this.pid();
      if (stale !== undefined) {
        this.opts.log.warn('BIRD does not answer on its control socket; killing it', { pid: stale, socket: this.socketPath });
        await killAndWait(stale, STOP_TIMEOUT_MS);
      }
      await this.start(config);
      this.applied = config;
      return 'started';
    }
    if (this.applied !== config) {
      const outcome = await this.apply(config);
      this.applied = config;
      this.opts.log.info('BIRD configuration applied', { outcome });
    }
    return result;
  }

  /** The BGP sessions, as BIRD reports them. */
  sessions(): Promise<BirdSession[]> {
    return birdSessions(this.socketPath);
  }

  /** twilld stops: BIRD keeps its sessions and routes for the next twilld. */
  detach(): void {
    this.stopping = true;
    this.child = undefined;
  }

  /** Ends BIRD (its routes go with it) and removes its directory. */
  async destroy(): Promise<DestroyResult> {
    this.stopping = true;
    await this.queue;
    // An `ensure` that was still queued has cleared it.
    this.stopping = true;
    const pid = this.pid();
    this.child = undefined;
    this.adopted = false;
    this.applied = undefined;
    const metric = kernelMetricOf(readIfExists(this.configFile) ?? '');
    let killed = false;
    if (pid !== undefined) killed = await killAndWait(pid, STOP_TIMEOUT_MS);
    // BIRD leaves its routes when it is killed, when it had died before, and also on SIGTERM while its kernel
    // protocol has not synced with the kernel yet (during graceful restart recovery, up to a scan after it).
    const routesRemoved = metric !== undefined ? await removeBirdRoutes(metric) : 0;
    rmSync(this.dir, { recursive: true, force: true });
    this.opts.log.info('BIRD stopped', { pid, killed, routesRemoved });
    return { ...(pid !== undefined ? { pid } : {}), killed, routesRemoved };
  }

  private async answers(): Promise<boolean> {
    if (!existsSync(this.socketPath)) return false;
    try {
      const control = await BirdControl.connect(this.socketPath, ALIVE_TIMEOUT_MS);
      control.close();
      return true;
    } catch {
      return false;
    }
  }

  /** Checks `config` in BIRD, then makes it bird.conf and reloads it. */
  private async apply(config: string): Promise<ConfigureOutcome> {
    const control = await BirdControl.connect(this.socketPath);
    try {
      if (readIfExists(this.configFile) !== config) {
        writeFileSync(this.candidateFile, config, { mode: 0o600 });
        await birdConfigureCheck(control, this.candidateFile);
        renameSync(this.candidateFile, this.configFile);
      }
      return await birdConfigure(control, this.configFile);
    } finally {
      control.close();
      rmSync(this.candidateFile, { force: true });
    }
  }

  private async start(config: string): Promise<void> {
    const program = findBird();
    if (!program) throw new BirdEngineError(`cannot start BIRD: ${birdMissing()}`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // BIRD removes its PID file when it exits cleanly: one left behind means the last BIRD died with its routes in the kernel.
    const recover = existsSync(this.pidFile);
    if (readIfExists(this.configFile) !== config) {
      writeFileSync(this.candidateFile, config, { mode: 0o600 });
      try {
        await parseCheck(program, this.candidateFile);
        renameSync(this.candidateFile, this.configFile);
      } finally {
        rmSync(this.candidateFile, { force: true });
      }
    }
    rmSync(this.socketPath, { force: true });
    this.rotateLog();
    const log = openSync(this.logFile, 'a');
    let child: ChildProcess;
    const args = ['-f', '-c', this.configFile, '-s', this.socketPath, '-P', this.pidFile, ...(recover ? ['-R'] : [])];
    try {
      // Detached, in its own process group, with its output in a file: it must outlive twilld (a restart keeps
      // every session) and never write to a pipe whose reader is gone.
      child = spawn(program, args, { detached: true, stdio: ['ignore', log, log] });
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
    void exited.then((how) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.stopping) return;
      this.applied = undefined;
      this.opts.log.error('BIRD exited; starting a new one', { pid: child.pid, how, log: this.logTail() });
      this.opts.requestReconcile?.('BIRD exited');
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    let early: string | undefined;
    void exited.then((how) => (early = how));
    while (Date.now() < deadline) {
      if (early !== undefined) throw new BirdEngineError(`BIRD did not start (${early}): ${this.logTail() || 'no output'}`);
      if (await this.answers()) {
        this.opts.log.info('BIRD started', { pid: child.pid, socket: this.socketPath, recovery: recover });
        return;
      }
      await sleep(50);
    }
    if (child.pid !== undefined) await killAndWait(child.pid, STOP_TIMEOUT_MS);
    throw new BirdEngineError(`BIRD did not open ${this.socketPath} within ${START_TIMEOUT_MS} ms: ${this.logTail() || 'no output'}`);
  }

  private rotateLog(): void {
    try {
      if (statSync(this.logFile).size > MAX_LOG_BYTES) renameSync(this.logFile, `${this.logFile}.old`);
    } catch {
      // No log yet.
    }
  }

  private logTail(): string {
    return (readIfExists(this.logFile) ?? '').trim().split('\n').slice(-3).join(' | ');
  }
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** A recycled PID is not ours: only a live bird counts. */
/** The config this network namespace's BIRD was last given (undefined: none). */
export function birdConfigFor(netnsPath?: string): string | undefined {
  try {
    return readFileSync(path.join(birdRunDirFor(netnsPath), 'bird.conf'), 'utf8');
  } catch {
    return undefined;
  }
}

/** Whether this network namespace's BIRD (started by a twilld) runs: a restarting twilld adopts it. */
export function birdRunning(netnsPath?: string): boolean {
  try {
    const pid = Number(readFileSync(path.join(birdRunDirFor(netnsPath), 'bird.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && isBird(pid);
  } catch {
    return false;
  }
}

function isBird(pid: number): boolean {
  return commandName(pid) === 'bird' && running(pid);
}

/**
 * `bird -p`: BIRD's own parse of `file`, for a BIRD not running yet. Rejects like `configure check` over the
 * socket does, with BirdConfigFileError (file:line:column and BIRD's message).
 */
function parseCheck(program: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(program, ['-p', '-c', file], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (!err) return resolve();
      const why = `${stderr}${stdout}`.trim().split('\n')[0].replace(/^bird: /, '') || err.message;
      reject(new BirdConfigFileError(`bird -p -c ${file}`, CONFIG_FILE_ERROR, why));
    });
  });
}

/**
 * Deletes the IPv4 routes twill's BIRD installs (protocol bird, table main, its kernel metric) in this
 * namespace; another BIRD's routes on the host differ in their metric. Resolves with how many.
 */
async function removeBirdRoutes(metric: number): Promise<number> {
  const nl = Netlink.open();
  try {
    const routes = await nl.listRoutes({ family: 4, table: RouteTable.MAIN, protocol: BIRD_ROUTE_PROTOCOL });
    let removed = 0;
    for (const r of routes.filter((r) => (r.metric ?? 0) === metric)) {
      try {
        await nl.deleteRoute({ dst: r.dst, protocol: BIRD_ROUTE_PROTOCOL, table: RouteTable.MAIN, metric });
        removed++;
      } catch {
        // Gone already (its device went away): nothing left to remove.
      }
    }
    return removed;
  } finally {
    nl.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}


