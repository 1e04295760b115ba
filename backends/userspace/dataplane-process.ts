/**
 * One running twill-dataplane, seen from twilld: either started here
 * (`launch`: spawned — inside a named network namespace when asked, `ip
 * netns exec` execs it, so the PID is the program's own — then attached)
 * or found running (`adopt`: the one a previous twilld detached from,
 * reached through its socket). Requests go over the control socket
 * (control-protocol.ts); EngineSupervisor decides what to do when it ends.
 *
 * Failure semantics: `launch` rejects with DatapathStartError when the
 * program refuses (its code: EBUSY, EADDRINUSE, EPERM, ENOTUN, …; it has
 * exited then) or DatapathDownError when it dies or stays silent first;
 * `adopt` resolves null when nothing listens (no socket, or a stale one)
 * and rejects with DatapathStartError EBUSY when another twilld runs that
 * dataplane. `request` rejects with DataplaneRequestError (the program's
 * code and message) or DatapathDownError when the program is gone or
 * silent past the timeout. `exited` always resolves, never rejects: for a
 * spawned program on its exit status; for an adopted one (not our child:
 * no status) once its socket closed and its PID is gone.
 */
import { spawn, type ChildProcess } from 'child_process';
import { readFileSync } from 'fs';
import * as net from 'net';
import type { Log } from '../../lib/observe/logger';
import { running } from '../../lib/process-state';
import { DatapathDownError, DatapathStartError } from './errors';
import type { EngineCounters, EngineInfo } from './native-engine';
import { encodeFrame, encodeTable, FrameReader, Message, Request, type Frame } from './control-protocol';

export interface DataplaneExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The engine's own reason, when its threads gave up before the program exited. */
  readonly fatal?: string;
}

export interface LaunchOptions {
  readonly log: Log;
  /** The twill-dataplane executable. */
  readonly program: string;
  /** Its arguments (dataplaneArgs). */
  readonly args: readonly string[];
  /** The peer table from the engine's first packet on. */
  readonly table: readonly number[];
  /** Run it inside this named network namespace. */
  readonly netns?: string;
  readonly timeoutMs: number;
}

export interface AdoptOptions {
  readonly log: Log;
  readonly socketPath: string;
  readonly args: readonly string[];
  readonly timeoutMs: number;
}

/** What ATTACH answers. */
interface Attached {
  pid: number;
  socket: string;
  attaches: number;
  /** The running engine has the config this twilld asked for. */
  adopted: boolean;
  /** Otherwise: what differs. */
  mismatch: string;
  info: EngineInfo;
}

interface Pending {
  what: string;
  resolve(f: Frame): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** An error the program reported for a request. */
export class DataplaneRequestError extends Error {
  constructor(readonly operation: string, readonly code: string, message: string) {
    super(`userspace datapath: ${operation} failed: ${message}`);
    this.name = 'DataplaneRequestError';
  }
}

const ADOPTED_EXIT_POLL_MS = 10;
const ADOPTED_EXIT_WAIT_MS = 2000;

export class DataplaneProcess {
  readonly exited: Promise<DataplaneExit>;
  /** Called with every counters report (about once a second). */
  onCounters: (c: EngineCounters) => void = () => undefined;
  /** Date.now() of the last frame from the program. */
  lastHeard = Date.now();
  /** What the engine runs with; set once attached. */
  info!: EngineInfo;
  /** The running engine has this twilld's config (false: the caller should replace it). */
  adopted = false;
  /** What differs when not `adopted`. */
  mismatch = '';
  /** The program was found running rather than started here. */
  readonly foundRunning: boolean;

  private exitStatus: DataplaneExit | null = null;
  private fatal?: string;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new FrameReader();
  private sock: net.Socket | null = null;
  private programPid: number | undefined;
  private resolveExit!: (e: DataplaneExit) => void;

  private constructor(private readonly log: Log, private readonly child: ChildProcess | null) {
    this.foundRunning = child === null;
    this.programPid = child?.pid;
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    if (!child) return;
    // 'close', not 'exit': it comes after stdout is read out, so the start verdict is never lost to the exit.
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => this.ended({ code, signal }));
    child.once('error', (err) => {
      this.log.error('twill-dataplane could not be started', { error: err.message });
      this.ended({ code: null, signal: null });
    });
    // stdout carries the start verdict (read in launch), stderr what the program says: both end up in the log.
    let partial = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) this.log.warn(`datapath: ${line}`, { pid: this.pid });
    });
  }

  /** Spawns the program with `table`, waits for its verdict, connects and attaches. */
  static async launch(opts: LaunchOptions): Promise<DataplaneProcess> {
    const argv = [...opts.args, '--peers-stdin'];
    const stdio: ('pipe')[] = ['pipe', 'pipe', 'pipe'];
    const child = opts.netns ? spawn('ip', ['netns', 'exec', opts.netns, opts.program, ...argv], { stdio }) : spawn(opts.program, argv, { stdio });
    const dp = new DataplaneProcess(opts.log, child);
    try {
      child.stdin?.on('error', () => undefined); // a program that refused early closes its stdin: not our failure
      child.stdin?.end(encodeTable(opts.table));
      const socketPath = await dp.verdict(opts.timeoutMs);
      await dp.connect(socketPath);
      const attached = await dp.attach(opts.args, opts.timeoutMs);
      if (!attached.adopted) throw new DatapathStartError('EINVAL', `twill-dataplane runs another config than asked (${attached.mismatch})`);
      return dp;
    } catch (err) {
      dp.kill('SIGKILL');
      await dp.exited;
      throw err;
    }
  }

  /** Attaches to the dataplane listening on `socketPath`; null when none does. */
  static async adopt(opts: AdoptOptions): Promise<DataplaneProcess | null> {
    const dp = new DataplaneProcess(opts.log, null);
    try {
      await dp.connect(opts.socketPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return null; // nothing there, or a socket a dead one left
      throw err;
    }
    try {
      await dp.attach(opts.args, opts.timeoutMs);
    } catch (err) {
      dp.sock?.destroy();
      if (err instanceof DataplaneRequestError) throw new DatapathStartError(err.code, err.message);
      throw err;
    }
    return dp;
  }

  /** PID of the program. */
  get pid(): number | undefined {
    return this.programPid;
  }

  get exitedWith(): DataplaneExit | null {
    return this.exitStatus;
  }

  /** Sends a request; resolves with the reply's payload. */
  async request(kind: Request, payload?: Buffer, timeoutMs = 10_000): Promise<Buffer> {
    const what = Request[kind].replace(/[A-Z]/g, (c, i: number) => (i ? ' ' : '') + c.toLowerCase());
    const sock = this.sock;
    if (this.exitStatus || !sock || sock.destroyed) return Promise.reject(new DatapathDownError(what, this.describeExit()));
    const id = this.nextId++;
    const frame = await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DatapathDownError(what, `no answer from twill-dataplane within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { what, resolve, reject, timer });
      sock.write(encodeFrame(kind, id, payload));
    });
    if (frame.status !== 0) {
      const e = JSON.parse(frame.payload.toString('utf8')) as { code: string; message: string };
      throw new DataplaneRequestError(what, e.code, e.message);
    }
    return frame.payload;
  }

  /** Sends a request whose reply is JSON. */
  async requestJson<T>(kind: Request, payload?: Buffer, timeoutMs?: number): Promise<T> {
    return JSON.parse((await this.request(kind, payload, timeoutMs)).toString('utf8')) as T;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    const pid = this.programPid;
    if (this.exitStatus || pid === undefined) return;
    // A program we did not start could be long gone and its PID reused: check it is still ours.
    if (!this.child && !isDataplane(pid)) return;
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }

  /**
   * Lets the program live on without this process (after a `detach`):
   * the socket and pipes close and nothing here waits for it.
   */
  release(): void {
    this.sock?.end();
    this.child?.stdout?.destroy();
    this.child?.stderr?.destroy();
    this.child?.unref();
    this.ended({ code: null, signal: null }, true);
  }

  /** Resolves with the exit status; SIGKILL after `graceMs`. */
  async waitExit(graceMs: number): Promise<DataplaneExit> {
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  describeExit(): string {
    const s = this.exitStatus;
    if (!s) return 'twill-dataplane is running';
    if (s.fatal) return `the engine stopped: ${s.fatal}`;
    if (s.signal) return `twill-dataplane was killed by ${s.signal}`;
    if (s.code !== null) return `twill-dataplane exited with code ${s.code}`;
    return `twill-dataplane (pid ${String(this.pid)}) is gone`;
  }

  /** The program's one-line verdict on stdout: its socket, or why it refused. */
  private verdict(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = this.child!;
      let text = '';
      const timer = setTimeout(() => fail(new DatapathDownError('start', `twill-dataplane did not start within ${timeoutMs} ms`)), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        reject(e);
      };
      const onData = (chunk: string) => {
        text += chunk;
        const nl = text.indexOf('\n');
        if (nl < 0) return;
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        try {
          const v = JSON.parse(text.slice(0, nl)) as { ready?: { pid: number; socket: string; info: EngineInfo }; error?: { code: string; message: string } };
          if (v.ready) {
            this.info = v.ready.info;
            resolve(v.ready.socket);
          } else {
            reject(new DatapathStartError(v.error?.code ?? 'EIO', v.error?.message ?? text));
          }
        } catch {
          reject(new DatapathStartError('EIO', `twill-dataplane said something unexpected: ${text.slice(0, nl)}`));
        }
      };
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', onData);
      void this.exited.then(() => fail(new DatapathDownError('start', this.describeExit())));
    });
  }

  private connect(socketPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      sock.once('connect', () => {
        sock.off('error', reject);
        this.sock = sock;
        sock.on('error', () => undefined); // 'close' follows and says it all
        sock.on('data', (chunk: Buffer) => this.onData(chunk));
        sock.on('close', () => this.onClose());
        resolve();
      });
      sock.once('error', reject);
    });
  }

  private async attach(args: readonly string[], timeoutMs: number): Promise<Attached> {
    const payload = Buffer.concat(args.map((a) => Buffer.from(`${a}\0`, 'utf8')));
    const a = await this.requestJson<Attached>(Request.Attach, payload, timeoutMs);
    this.programPid = a.pid;
    this.adopted = a.adopted;
    this.mismatch = a.mismatch;
    // Only the first attach, our own spawn's, may say the device was created by this start.
    this.info = { ...a.info, tunCreated: a.info.tunCreated && a.attaches === 1 };
    return a;
  }

  private onData(chunk: Buffer): void {
    this.lastHeard = Date.now();
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.log.error((err as Error).message);
      this.sock?.destroy();
      return;
    }
    for (const f of frames) {
      switch (f.kind) {
        case Message.Counters:
          this.onCounters(JSON.parse(f.payload.toString('utf8')) as EngineCounters);
          break;
        case Message.Fatal:
          this.fatal = (JSON.parse(f.payload.toString('utf8')) as { message: string }).message;
          break;
        case Message.Reply: {
          const p = this.pending.get(f.id);
          if (!p) break;
          this.pending.delete(f.id);
          clearTimeout(p.timer);
          p.resolve(f);
          break;
        }
      }
    }
  }

  private onClose(): void {
    this.sock = null;
    const why = this.fatal ? `the engine stopped: ${this.fatal}` : 'twill-dataplane closed its socket';
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new DatapathDownError(p.what, why));
    }
    this.pending.clear();
    if (this.child || this.exitStatus) return; // a child's exit status comes with its 'exit' event
    // Not our child: its end is the socket closing; wait until its PID is gone, so that a successor finds the TUN free.
    void (async () => {
      const pid = this.programPid;
      const deadline = Date.now() + ADOPTED_EXIT_WAIT_MS;
      while (pid !== undefined && isDataplane(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, ADOPTED_EXIT_POLL_MS));
      this.ended({ code: null, signal: null });
    })();
  }

  /** Records the end once; `quiet`: released on purpose, nothing to report. */
  private ended(exit: DataplaneExit, quiet = false): void {
    if (this.exitStatus) return;
    this.exitStatus = { ...exit, ...(this.fatal ? { fatal: this.fatal } : {}) };
    if (!quiet) {
      const why = this.describeExit();
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new DatapathDownError(p.what, why));
      }
      this.pending.clear();
    }
    this.sock?.destroy();
    this.resolveExit(this.exitStatus);
  }

  /** Deletes a TUN device with the one-shot `twill-dataplane --delete-tun` (no engine runs). */
  static deleteTun(program: string, tunName: string, netns: string | undefined, timeoutMs: number): Promise<void> {
    const argv = ['--delete-tun', tunName];
    const child = netns ? spawn('ip', ['netns', 'exec', netns, program, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] }) : spawn(program, argv, { stdio: ['ignore', 'pipe', 'ignore'] });
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (c: string) => (out += c));
      child.once('error', (err) => reject(new DatapathStartError('EIO', `twill-dataplane --delete-tun: ${err.message}`)));
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) return resolve();
        try {
          const e = (JSON.parse(out.split('\n')[0]) as { error: { code: string; message: string } }).error;
          reject(new DatapathStartError(e.code, e.message));
        } catch {
          reject(new DatapathStartError('EIO', `twill-dataplane --delete-tun ${tunName} exited with ${String(code)}`));
        }
      });
    });
  }
}

/** `pid` still runs (or is still exiting) and is twill-dataplane. */
function isDataplane(pid: number): boolean {
  try {
    return running(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0].endsWith('twill-dataplane');
  } catch {
    return false;
  }
}
