/**
 * One datapath host process, seen from twilld: forked (inside a named
 * network namespace when asked: `ip netns exec` execs node, so the PID is
 * the host's own), started, asked things over IPC, stopped or killed.
 * EngineSupervisor decides what to do when it dies.
 *
 * Failure semantics: `start` rejects with DatapathStartError when the engine
 * refuses (the host then exits by itself) or DatapathDownError when the
 * host dies or stays silent first; `request` rejects with the host's error
 * (DatapathStartError-shaped: code + message) or DatapathDownError when the
 * host exits, the channel closes or no reply comes within the timeout.
 * `exited` always resolves, never rejects.
 */
import { fork, type ChildProcess } from 'child_process';
import * as path from 'path';
import type { Log } from '../../lib/observe/logger';
import { DatapathDownError, DatapathStartError } from './errors';
import type { EngineConfig, EngineCounters, EngineInfo } from './native-engine';
import type { HostMessage, HostOp, ParentMessage } from './host-protocol';

/** The compiled host entry point, beside this module in dist/. */
export const HOST_SCRIPT = path.join(__dirname, 'engine-host.js');

export interface HostExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The engine's own reason, when its threads gave up before the host exited. */
  readonly fatal?: string;
}

export interface HostSpawnOptions {
  readonly log: Log;
  /** Run the host inside this named network namespace (`ip netns exec`). */
  readonly netns?: string;
}

interface Pending {
  what: string;
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** An error the host reported for a request (same shape as a start error). */
export class HostRequestError extends Error {
  constructor(readonly operation: string, readonly code: string, message: string) {
    super(`userspace datapath: ${operation} failed: ${message}`);
    this.name = 'HostRequestError';
  }
}

export class HostProcess {
  readonly exited: Promise<HostExit>;
  /** Called with every counters report (about once a second). */
  onCounters: (c: EngineCounters) => void = () => undefined;
  /** Date.now() of the last message from the host. */
  lastHeard = Date.now();

  private exitStatus: HostExit | null = null;
  private fatal?: string;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private startWaiter: Pending | null = null;

  private constructor(private readonly child: ChildProcess, private readonly log: Log) {
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitStatus) return;
        this.exitStatus = { code, signal, ...(this.fatal ? { fatal: this.fatal } : {}) };
        const why = this.describeExit();
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new DatapathDownError('complete the request', why));
        }
        this.pending.clear();
        this.startWaiter?.reject(new DatapathDownError('start', why));
        resolve(this.exitStatus);
      };
      child.once('exit', done);
      child.once('error', (err) => {
        this.log.error('userspace datapath host could not be started', { error: err.message });
        done(null, null);
      });
    });
    child.on('message', (m: HostMessage) => this.onMessage(m));
    for (const stream of ['stdout', 'stderr'] as const) {
      let partial = '';
      child[stream]?.setEncoding('utf8');
      child[stream]?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) this.log.warn(`datapath host: ${line}`, { pid: this.pid });
      });
    }
  }

  static spawn(opts: HostSpawnOptions): HostProcess {
    const stdio: ('ignore' | 'pipe' | 'ipc')[] = ['ignore', 'pipe', 'pipe', 'ipc'];
    const child = opts.netns
      ? fork(HOST_SCRIPT, [], { execPath: 'ip', execArgv: ['netns', 'exec', opts.netns, process.execPath], stdio })
      : fork(HOST_SCRIPT, [], { execArgv: [], stdio });
    return new HostProcess(child, opts.log);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exitedWith(): HostExit | null {
    return this.exitStatus;
  }

  /** Starts the engine; resolves with what it ended up with. */
  start(config: EngineConfig, faultInjection: boolean, table: number[], timeoutMs: number): Promise<EngineInfo> {
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DatapathDownError('start', `the datapath host did not start the engine within ${timeoutMs} ms`)), timeoutMs);
      this.startWaiter = {
        what: 'start',
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
        timer,
      };
      this.post({ kind: 'start', config, faultInjection, table }, (err) => this.startWaiter?.reject(err));
    }) as Promise<EngineInfo>;
  }

  /** Deletes a TUN device in a host that runs no engine, then exits. */
  deleteTun(tunName: string, timeoutMs: number): Promise<void> {
    return this.ask(0, { kind: 'delete-tun', tunName }, 'delete the TUN device', timeoutMs).then(() => undefined);
  }

  request(op: HostOp, timeoutMs: number): Promise<unknown> {
    const id = this.nextId++;
    return this.ask(id, { kind: 'request', id, ...op }, op.op, timeoutMs);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitStatus || this.child.pid === undefined) return;
    try {
      process.kill(this.child.pid, signal);
    } catch {
      // already gone
    }
  }

  /**
   * Lets the host live on without this process (after a `detach` request):
   * the IPC channel and output pipes close and nothing here waits for it.
   */
  release(): void {
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
    if (this.child.connected) this.child.disconnect();
    this.child.unref();
  }

  /** Resolves with the exit status; SIGKILL after `graceMs`. */
  async waitExit(graceMs: number): Promise<HostExit> {
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  describeExit(): string {
    const s = this.exitStatus;
    if (!s) return 'the datapath host is running';
    if (s.fatal) return `the engine stopped: ${s.fatal}`;
    if (s.signal) return `the datapath host was killed by ${s.signal}`;
    return `the datapath host exited with code ${String(s.code)}`;
  }

  private ask(id: number, msg: ParentMessage, what: string, timeoutMs: number): Promise<unknown> {
    if (this.exitStatus) return Promise.reject(new DatapathDownError(what, this.describeExit()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DatapathDownError(what, `no answer from the datapath host within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { what, resolve, reject, timer });
      this.post(msg, (err) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      });
    });
  }

  private post(msg: ParentMessage, onError: (e: Error) => void): void {
    const fail = (err: Error) => onError(new DatapathDownError('send to the datapath host', err.message));
    try {
      this.child.send(msg, (err) => err && fail(err));
    } catch (err) {
      fail(err as Error);
    }
  }

  private onMessage(m: HostMessage): void {
    this.lastHeard = Date.now();
    switch (m.kind) {
      case 'started':
        this.startWaiter?.resolve(m.info);
        this.startWaiter = null;
        return;
      case 'start-failed':
        this.startWaiter?.reject(new DatapathStartError(m.error.code, m.error.message));
        this.startWaiter = null;
        return;
      case 'counters':
        this.onCounters(m.counters);
        return;
      case 'fatal':
        this.fatal = m.message;
        return;
      case 'reply': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.result);
        else p.reject(new HostRequestError(p.what, m.error.code, m.error.message));
        return;
      }
    }
  }
}
