/**
 * Network namespaces for the integration harness: create and delete them, run
 * a command inside one, spawn a long-running process inside one, and call `ip`.
 *
 * Everything goes through `execFile`/`spawn` with argument arrays, never a
 * shell string, so names and filters can never be re-parsed by a shell.
 *
 * Failure semantics: `run` and the helpers built on it reject with
 * `CommandError` (argv, exit code, stderr) when the command exits non-zero or
 * times out. Deletions (`deleteNetns`, `deleteLink`) are idempotent: a thing
 * that is already gone is success, because cleanup must be safe to repeat.
 * Processes are only ever signalled by PID (`NsProcess.stop`, `killPid`).
 */
import { execFile, spawn, type ChildProcess } from 'child_process';
import { promises as fs } from 'fs';
import { running } from '../../lib/process-state';
import './deployed-env';

/** What a finished command printed. */
export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** A command that exited non-zero, was killed, or could not be started. */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stdout: string,
    readonly stderr: string,
    detail?: string,
  ) {
    const why = detail ?? (signal ? `killed by ${signal}` : `exited with code ${String(exitCode)}`);
    const tail = stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : '';
    super(`\`${argv.join(' ')}\` ${why}${tail}`);
    this.name = 'CommandError';
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Runs argv[0] with the remaining arguments and resolves with its output. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (argv.length === 0) throw new TypeError('run: empty argv');
  const [file, ...args] = argv;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env: opts.env },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & { code?: number | string; signal?: string | null; killed?: boolean };
        if (typeof e.code === 'string') {
          // spawn failure such as ENOENT: the binary is not installed.
          reject(new CommandError(argv, null, null, stdout, stderr, `could not start (${e.code}): is ${file} installed?`));
          return;
        }
        const detail = e.killed && e.signal === 'SIGKILL' ? `timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms` : undefined;
        reject(new CommandError(argv, typeof e.code === 'number' ? e.code : null, e.signal ?? null, stdout, stderr, detail));
      },
    );
  });
}

/** `ip <args>` in the root namespace; resolves with stdout. */
export async function ip(args: readonly string[], opts?: RunOptions): Promise<string> {
  return (await run(['ip', ...args], opts)).stdout;
}

/**
 * `ip -n <ns> <args>`: iproute2 enters the namespace itself, which is cheaper
 * than `ip netns exec` (no fork, no /sys remount).
 */
export async function ipIn(ns: string | null, args: readonly string[], opts?: RunOptions): Promise<string> {
  return ns === null ? ip(args, opts) : ip(['-n', ns, ...args], opts);
}

/** Runs argv inside `ns` through `ip netns exec` (or in the root namespace when ns is null). */
export function execIn(ns: string | null, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run(nsArgv(ns, argv), opts);
}

/** The argv that runs `argv` inside `ns`; `ip netns exec` execs the command, so PIDs match. */
export function nsArgv(ns: string | null, argv: readonly string[]): string[] {
  return ns === null ? [...argv] : ['ip', 'netns', 'exec', ns, ...argv];
}

/** Names of all named namespaces (`ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  // Lines look like "name" or "name (id: 3)".
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n): n is string => Boolean(n));
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await listNetns()).includes(name);
}

/** Creates a named namespace with its loopback up. Rejects if the name is taken. */
export async function addNetns(name: string): Promise<void> {
  await ip(['netns', 'add', name]);
  await ipIn(name, ['link', 'set', 'lo', 'up']);
}

/**
 * Deletes a named namespace; resolves false if it did not exist. The kernel
 * frees the namespace (and its devices) only once no process is left in it,
 * so callers kill the namespace's processes first (`killNetnsProcesses`).
 */
export async function deleteNetns(name: string): Promise<boolean> {
  try {
    await ip(['netns', 'delete', name]);
    return true;
  } catch (err) {
    if (!(await netnsExists(name))) return false;
    throw err;
  }
}

/** PIDs of the processes whose network namespace is `ns` (empty when ns is gone). */
export async function netnsPids(ns: string): Promise<number[]> {
  try {
    const out = await ip(['netns', 'pids', ns]);
    return out
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

/** Kills, by PID, every process left in `ns`; resolves with the PIDs it signalled. */
export async function killNetnsProcesses(ns: string, graceMs = 2000): Promise<number[]> {
  const pids = (await netnsPids(ns)).filter((p) => p !== process.pid);
  await Promise.all(pids.map((p) => killPid(p, graceMs)));
  return pids;
}

/** True while `pid` runs or is still exiting (lib/process-state). */
export async function isAlive(pid: number): Promise<boolean> {
  return running(pid);
}

/** SIGTERM to `pid`, then SIGKILL if it is still alive after `graceMs`. Never by name. */
export async function killPid(pid: number, graceMs = 2000): Promise<void> {
  if (!signal(pid, 'SIGTERM')) return;
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!(await isAlive(pid))) return;
    await sleep(20);
  }
  signal(pid, 'SIGKILL');
  for (let i = 0; i < 100 && (await isAlive(pid)); i++) await sleep(20);
}

/** Sends a signal; false when the process no longer exists. */
function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Inode of a named namespace (what /proc/<pid>/ns/net points at); null when it does not exist. */
async function netnsInode(ns: string): Promise<number | null> {
  try {
    return (await fs.stat(`/run/netns/${ns}`)).ino;
  } catch {
    return null;
  }
}

/** Inode of the network namespace `pid` is in; null when the process is gone. */
async function pidNetnsInode(pid: number): Promise<number | null> {
  try {
    return (await fs.stat(`/proc/${pid}/ns/net`)).ino;
  } catch {
    return null;
  }
}

/** One link as `ip -j link show` reports it (only the fields the harness reads). */
export interface LinkInfo {
  ifname: string;
  ifindex: number;
  mtu: number;
  operstate: string;
  address?: string;
  ifalias?: string;
  master?: string;
  /** `link` is the peer's name for a veth whose peer is in the same namespace. */
  link?: string;
}

/** The links of a namespace (root when ns is null). */
export async function listLinks(ns: string | null = null): Promise<LinkInfo[]> {
  const out = await ipIn(ns, ['-j', 'link', 'show']);
  return out.trim() ? (JSON.parse(out) as LinkInfo[]) : [];
}

/** Deletes a link; resolves false when it did not exist. */
export async function deleteLink(ns: string | null, name: string): Promise<boolean> {
  try {
    await ipIn(ns, ['link', 'delete', name]);
    return true;
  } catch (err) {
    if (err instanceof CommandError && /Cannot find device|does not exist/i.test(err.stderr)) return false;
    throw err;
  }
}

/** Sets a sysctl inside `ns` (sysctls under net/ are per namespace). */
export async function sysctlIn(ns: string, key: string, value: string): Promise<void> {
  await execIn(ns, ['sysctl', '-q', '-w', `${key}=${value}`]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** How a spawned process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** 'pipe' (default) collects output and feeds `onLine`; 'inherit' shows it; 'ignore' drops it. */
  stdio?: 'pipe' | 'inherit' | 'ignore';
}

type LineListener = (line: string, stream: 'stdout' | 'stderr') => void;

/** Output kept per stream; older text is dropped so a chatty daemon cannot grow memory. */
const MAX_KEPT_OUTPUT = 1024 * 1024;
/** Lines held for a listener that has not been added yet (a process nobody listens to must not grow memory). */
const MAX_EARLY_LINES = 10_000;

/**
 * A long-running process inside a namespace (twilld, ping, a capture driver).
 * `ip netns exec` execs the command in place, so `pid` is the command's own
 * PID and can be signalled directly.
 */
export class NsProcess {
  readonly pid: number;
  readonly argv: readonly string[];
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | null = null;
  private out = '';
  private err = '';
  private readonly listeners: LineListener[] = [];
  /** Lines that arrived before the first `onLine` listener, replayed to it. */
  private early: [string, 'stdout' | 'stderr'][] = [];

  private constructor(
    readonly ns: string | null,
    private readonly child: ChildProcess,
    argv: readonly string[],
  ) {
    if (child.pid === undefined) throw new Error('NsProcess: child has no pid');
    this.pid = child.pid;
    this.argv = argv;
    // 'close' comes after the output pipes are drained, so a reader sees every
    // line before `exited` resolves; a grandchild that keeps the pipes open
    // must not hold that up for long, hence the short fallback after 'exit'.
    this.exited = new Promise((resolve) => {
      const done = (): void => {
        if (this.exitStatus) resolve(this.exitStatus);
      };
      child.once('exit', (code, sig) => {
        this.exitStatus = { code, signal: sig };
        setTimeout(done, 500).unref();
      });
      child.once('close', done);
    });
    this.attach('stdout');
    this.attach('stderr');
  }

  /**
   * Spawns argv inside `ns` (root when null). Resolves once the process is
   * running inside the namespace: `ip netns exec` is already running when
   * Node reports the spawn but joins the namespace a moment later, and a
   * caller that lists the namespace's PIDs must find this one. Rejects with
   * `CommandError` if it cannot be started or exits before getting there
   * (a missing namespace, say).
   */
  static async spawn(ns: string | null, argv: readonly string[], opts: SpawnOptions = {}): Promise<NsProcess> {
    const full = nsArgv(ns, argv);
    const stdio = opts.stdio ?? 'pipe';
    const child = spawn(full[0], full.slice(1), {
      env: opts.env,
      cwd: opts.cwd,
      stdio: ['ignore', stdio, stdio],
    });
    const proc = await new Promise<NsProcess>((resolve, reject) => {
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(new CommandError(full, null, null, '', '', `could not start (${e.code ?? e.message})`)),
      );
      child.once('spawn', () => resolve(new NsProcess(ns, child, full)));
    });
    if (ns === null) return proc;
    const target = await netnsInode(ns);
    const deadline = Date.now() + 5000;
    for (;;) {
      if (proc.exitStatus) {
        await proc.exited;
        throw new CommandError(full, proc.exitStatus.code, proc.exitStatus.signal, proc.out, proc.err, 'exited at once');
      }
      if (target !== null && (await pidNetnsInode(proc.pid)) === target) return proc;
      if (Date.now() >= deadline) {
        await proc.stop(1000);
        throw new CommandError(full, null, null, proc.out, proc.err, `did not enter namespace ${ns} within 5 s`);
      }
      await sleep(5);
    }
  }

  get exitedWith(): ExitStatus | null {
    return this.exitStatus;
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  /**
   * Calls `fn` for every complete output line. The first listener also gets
   * the lines printed before it was added, so a caller never races the child.
   */
  onLine(fn: LineListener): void {
    this.listeners.push(fn);
    const early = this.early;
    this.early = [];
    for (const [line, stream] of early) fn(line, stream);
  }

  /** Sends a signal to this PID unless it has already exited. */
  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exitStatus === null) signal(this.pid, sig);
  }

  /** `sig` (default SIGTERM), then SIGKILL after `graceMs`; resolves with the exit status. */
  async stop(graceMs = 5000, sig: NodeJS.Signals = 'SIGTERM'): Promise<ExitStatus> {
    if (this.exitStatus) return this.exitStatus;
    this.kill(sig);
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  private attach(stream: 'stdout' | 'stderr'): void {
    const src = this.child[stream];
    if (!src) return;
    src.setEncoding('utf8');
    let partial = '';
    const emit = (line: string): void => {
      if (this.listeners.length === 0) {
        if (this.early.length < MAX_EARLY_LINES) this.early.push([line, stream]);
        return;
      }
      for (const fn of this.listeners) fn(line, stream);
    };
    src.on('data', (chunk: string) => {
      this.keep(stream, chunk);
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        emit(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
    });
    src.on('end', () => {
      if (partial) emit(partial);
      partial = '';
    });
  }

  private keep(stream: 'stdout' | 'stderr', chunk: string): void {
    const text = (stream === 'stdout' ? this.out : this.err) + chunk;
    const kept = text.length > MAX_KEPT_OUTPUT ? text.slice(text.length - MAX_KEPT_OUTPUT) : text;
    if (stream === 'stdout') this.out = kept;
    else this.err = kept;
  }
}

/** Spawns argv inside `ns`; see `NsProcess.spawn`. */
export function spawnIn(ns: string | null, argv: readonly string[], opts?: SpawnOptions): Promise<NsProcess> {
  return NsProcess.spawn(ns, argv, opts);
}
