/**
 * The test side of netlink-driver.ts: starts the driver in a network
 * namespace and calls lib/netlink (and what is built on it) there, one JSON
 * line per call. Used by netlink.test.ts and direct-reach.test.ts.
 */
import { ChildProcess, execFile, spawn } from 'child_process';
import * as path from 'path';
import * as readline from 'readline';
import { promisify } from 'util';
import type { NetlinkEvent } from '../../lib/netlink';
import type { DriverError, DriverReply } from './netlink-driver';

const execFileAsync = promisify(execFile);
const DRIVER = path.join(__dirname, 'netlink-driver.js');

export async function run(argv: string[]): Promise<string> {
  const { stdout } = await execFileAsync(argv[0], argv.slice(1), { maxBuffer: 256 * 1024 * 1024, timeout: 30_000 });
  return stdout;
}

/** A failed driver call: the error as the library raised it. */
export class DriverCallError extends Error {
  constructor(readonly error: DriverError) {
    super(`${error.name}: ${error.message}`);
  }
}

/** The library, running in the namespace. */
export class Driver {
  readonly events: NetlinkEvent[] = [];
  private readonly calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private readonly eventWaiters = new Set<() => void>();
  private nextId = 1;
  private stderr = '';
  private readonly exited: Promise<void>;
  private dead = false;

  private constructor(private readonly child: ChildProcess) {
    child.stderr?.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    child.stdin?.on('error', () => undefined); // EPIPE after a crash; calls then fail below
    readline.createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    this.exited = new Promise((resolve) => child.on('exit', () => {
      this.dead = true;
      for (const c of this.calls.values()) c.reject(new Error(`driver exited: ${this.stderr}`));
      this.calls.clear();
      resolve();
    }));
  }

  static start(ns: string): Driver {
    return new Driver(spawn('ip', ['netns', 'exec', ns, process.execPath, DRIVER], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  call<T>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    if (this.dead) return Promise.reject(new Error(`driver exited: ${this.stderr}`));
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  /** The error a call fails with (the test fails if it succeeds). */
  async failure(method: string, ...args: unknown[]): Promise<DriverError> {
    try {
      await this.call(method, ...args);
    } catch (err) {
      if (err instanceof DriverCallError) return err.error;
      throw err;
    }
    throw new Error(`${method} succeeded, expected it to fail`);
  }

  /** Resolves with the first event (already seen or to come) matching `match`. */
  waitForEvent(match: (e: NetlinkEvent) => boolean, timeoutMs = 10_000): Promise<NetlinkEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.events.find(match);
        if (!found) return false;
        clearTimeout(timer);
        this.eventWaiters.delete(waiter);
        resolve(found);
        return true;
      };
      const waiter = (): void => { check(); };
      const timer = setTimeout(() => {
        this.eventWaiters.delete(waiter);
        reject(new Error(`no matching event within ${timeoutMs} ms; saw ${JSON.stringify(this.events.slice(-5))}`));
      }, timeoutMs);
      if (!check()) this.eventWaiters.add(waiter);
    });
  }

  async stop(): Promise<void> {
    this.child.stdin?.end();
    const timer = setTimeout(() => { if (this.child.pid) process.kill(this.child.pid, 'SIGKILL'); }, 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private onLine(line: string): void {
    const reply = JSON.parse(line) as DriverReply;
    if ('event' in reply) {
      this.events.push(reply.event);
      for (const w of [...this.eventWaiters]) w();
      return;
    }
    const call = this.calls.get(reply.id);
    if (!call) return;
    this.calls.delete(reply.id);
    if ('error' in reply) call.reject(new DriverCallError(reply.error));
    else call.resolve(reply.result);
  }
}
