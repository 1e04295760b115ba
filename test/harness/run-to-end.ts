/**
 * Runs a program to the end and reports how it ended, whatever its exit code:
 * for tests that assert on a CLI's failures as much as on its output (the
 * `run` of netns.ts rejects on a non-zero exit instead). The program is killed
 * by PID after `timeoutMs`.
 */
import { spawn } from 'child_process';
import './deployed-env';

export interface RunToEndResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** This process's environment without FLANNELD_* variables, which would change twill's flag defaults. */
export function envWithoutFlanneld(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_')) env[k] = v;
  return env;
}

export function runToEnd(file: string, args: readonly string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<RunToEndResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(file, args, { env: opts.env ?? envWithoutFlanneld(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}
