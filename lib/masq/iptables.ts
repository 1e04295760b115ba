/**
 * The same rules as nftables.ts, for hosts with iptables but no nft:
 * chains TWILL-POSTRTG (nat) and TWILL-FWD (filter) of twill's own, reached
 * by one jump rule each from POSTROUTING and FORWARD.
 *
 * The chains' contents are written with one `iptables-restore --noflush`
 * whose script arrives on stdin (declaring a chain flushes it, so a write
 * replaces exactly twill's rules and nothing else); the jump rules carry no
 * value from etcd, so they are plain arguments. Drift is detected as in
 * nftables.ts: the chains' `iptables-save` lines are compared with those
 * seen after the last write.
 */
import { execFile } from 'child_process';
import type { MasqPolicy } from './nftables';
import type { NatRules } from './nat-rules';

export const NAT_CHAIN = 'TWILL-POSTRTG';
export const FORWARD_CHAIN = 'TWILL-FWD';
const JUMPS = [
  { table: 'nat', parent: 'POSTROUTING', chain: NAT_CHAIN },
  { table: 'filter', parent: 'FORWARD', chain: FORWARD_CHAIN },
] as const;

export type IptablesRunner = (cmd: 'iptables' | 'iptables-restore' | 'iptables-save', args: readonly string[], stdin?: string) => Promise<string>;

export class IptablesUnavailableError extends Error {
  constructor(detail: string) {
    super(`cannot program NAT rules: ${detail}. Install nftables or iptables, or run without --ip-masq`);
    this.name = 'IptablesUnavailableError';
  }
}

export const runIptables: IptablesRunner = (cmd, args, stdin) =>
  new Promise((resolve, reject) => {
    const child = execFile(cmd, [...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new IptablesUnavailableError(`${cmd} is not installed`));
      reject(new Error(`${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });

export function renderRestore(p: MasqPolicy): string {
  const pods = p.podNetwork.toString();
  const node = p.nodeSubnet.toString();
  const lines = ['*nat', `:${NAT_CHAIN} - [0:0]`];
  if (p.masquerade) {
    lines.push(
      `-A ${NAT_CHAIN} -s ${pods} -d ${pods} -j RETURN`,
      `-A ${NAT_CHAIN} -s ${pods} ! -d 224.0.0.0/4 -j MASQUERADE --random-fully`,
      `-A ${NAT_CHAIN} ! -s ${pods} -d ${node} -j RETURN`,
      `-A ${NAT_CHAIN} ! -s ${pods} -d ${pods} -j MASQUERADE --random-fully`,
    );
  }
  lines.push('COMMIT', '*filter', `:${FORWARD_CHAIN} - [0:0]`);
  if (p.forwardRules) lines.push(`-A ${FORWARD_CHAIN} -s ${pods} -j ACCEPT`, `-A ${FORWARD_CHAIN} -d ${pods} -j ACCEPT`);
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

export class IptablesRules implements NatRules {
  readonly kind = 'iptables';
  private lastListing?: string;
  private lastScript?: string;

  constructor(private readonly run: IptablesRunner = runIptables) {}

  async ensure(policy: MasqPolicy): Promise<boolean> {
    const script = renderRestore(policy);
    const listing = await this.listing();
    if (script === this.lastScript && listing === this.lastListing && (await this.jumpsPresent())) return false;
    await this.run('iptables-restore', ['--noflush', '-w'], script);
    for (const j of JUMPS) {
      if (!(await this.hasJump(j.table, j.parent, j.chain))) {
        await this.run('iptables', ['-w', '-t', j.table, '-I', j.parent, '1', '-m', 'comment', '--comment', 'twill', '-j', j.chain]);
      }
    }
    this.lastScript = script;
    this.lastListing = await this.listing();
    return true;
  }

  async remove(): Promise<boolean> {
    this.lastScript = undefined;
    this.lastListing = undefined;
    let removed = false;
    for (const j of JUMPS) {
      while (await this.hasJump(j.table, j.parent, j.chain)) {
        await this.run('iptables', ['-w', '-t', j.table, '-D', j.parent, '-m', 'comment', '--comment', 'twill', '-j', j.chain]);
        removed = true;
      }
      const exists = await this.run('iptables', ['-w', '-t', j.table, '-S', j.chain]).then(() => true, () => false);
      if (exists) {
        await this.run('iptables', ['-w', '-t', j.table, '-F', j.chain]);
        await this.run('iptables', ['-w', '-t', j.table, '-X', j.chain]);
        removed = true;
      }
    }
    return removed;
  }

  private async jumpsPresent(): Promise<boolean> {
    for (const j of JUMPS) if (!(await this.hasJump(j.table, j.parent, j.chain))) return false;
    return true;
  }

  private hasJump(table: string, parent: string, chain: string): Promise<boolean> {
    return this.run('iptables', ['-w', '-t', table, '-C', parent, '-m', 'comment', '--comment', 'twill', '-j', chain]).then(() => true, (err: Error) => {
      if (err instanceof IptablesUnavailableError) throw err;
      return false;
    });
  }

  /** twill's rules as iptables-save prints them. */
  private async listing(): Promise<string> {
    const out = await this.run('iptables-save', []);
    return out.split('\n').filter((l) => l.startsWith(`-A ${NAT_CHAIN} `) || l.startsWith(`-A ${FORWARD_CHAIN} `)).join('\n');
  }
}
