/** Running commands for the lab: argument arrays only, never a shell. */
import { execFile } from 'child_process';

export class CommandFailed extends Error {
  constructor(readonly argv: readonly string[], readonly stderr: string) {
    super(`${argv.join(' ')} failed: ${stderr.trim() || 'no output'}`);
    this.name = 'CommandFailed';
  }
}

export function run(argv: readonly string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new CommandFailed(argv, String(stderr) || err.message));
      else resolve(String(stdout));
    });
  });
}

/** `ip` in the root namespace, or in `ns`. */
export function ip(args: readonly string[], ns?: string): Promise<string> {
  return run(ns ? ['ip', '-n', ns, ...args] : ['ip', ...args]);
}

export function inNs(ns: string, argv: readonly string[], timeoutMs?: number): Promise<string> {
  return run(['ip', 'netns', 'exec', ns, ...argv], timeoutMs);
}
