/**
 * Runs the built `twilld` as a real process (in the root namespace, or in
 * a node namespace through `ip netns exec`) and collects what it logs.
 * Stopped by PID only.
 */
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';
import './deployed-env';

export const TWILLD = path.resolve(__dirname, '../../cmd/twilld.js');

export interface DaemonProcess {
  readonly pid: number;
  output(): string;
  /** Resolves with the exit code (or the signal name) once it has exited. */
  exited(): Promise<number | string>;
  /** Sends a signal and waits for the exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

export function startDaemon(args: string[], opts: { netns?: string; env?: NodeJS.ProcessEnv } = {}): DaemonProcess {
  const argv = opts.netns ? ['netns', 'exec', opts.netns, process.execPath, TWILLD, ...args] : [TWILLD, ...args];
  const child: ChildProcess = spawn(opts.netns ? 'ip' : process.execPath, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  if (child.pid === undefined) throw new Error('twilld did not start');
  const pid = child.pid;
  return {
    pid,
    output: () => out,
    exited: () => exit,
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exit;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exit;
      clearTimeout(timer);
      return code;
    },
  };
}
