/** The `twill` CLI run as an operator would: the built CLI, as a real process (inside a node's namespace for diagnose). */
import { execFile } from 'child_process';
import * as path from 'path';
import type { TwillCluster } from './twill-cluster';

const TWILL = path.join(__dirname, '..', '..', 'cmd', 'twill.js');

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runDiagnose(tc: TwillCluster, node: number, args: readonly string[] = []): Promise<CliRun> {
  const argv = [
    'netns', 'exec', tc.nodeNs(node), process.execPath, TWILL, 'diagnose',
    '--etcd-endpoints', tc.etcdEndpointInNode(node), '--iface', 'eth0', '--subnet-file', tc.subnetFile(node), ...args,
  ];
  return new Promise((resolve) => {
    execFile('ip', argv, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export function linesMatching(stdout: string, re: RegExp): string[] {
  return stdout.split('\n').filter((l) => re.test(l));
}

/** `twill <args>` on the host, or inside a namespace; its stdout and stderr together. */
export function runTwill(args: readonly string[], ns?: string): Promise<string> {
  const argv = ns ? ['ip', 'netns', 'exec', ns, process.execPath, TWILL, ...args] : [process.execPath, TWILL, ...args];
  return new Promise((resolve) => execFile(argv[0], argv.slice(1), { timeout: 60_000 }, (_err, stdout, stderr) => resolve(stdout + stderr)));
}

/** `twill <args>` on the host, or inside a namespace, with its exit code and how long it took. */
export function runCli(args: readonly string[], ns?: string): Promise<CliRun & { readonly ms: number }> {
  const argv = ns ? ['ip', 'netns', 'exec', ns, process.execPath, TWILL, ...args] : [process.execPath, TWILL, ...args];
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}
