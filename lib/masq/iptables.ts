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
 * seen after the last write. With dual stack the same chains hold the IPv6
 * rules in ip6tables (flanneld's MasqIP6Rules: ff00::/8 in place of
 * 224.0.0.0/4); without it, twill's IPv6 chains are removed.
 */
import { execFile } from 'child_process';
import type { MasqNetworks, MasqPolicy } from './nftables';
import type { NatRules } from './nat-rules';

export const NAT_CHAIN = 'TWILL-POSTRTG';
export const FORWARD_CHAIN = 'TWILL-FWD';
const JUMPS = [
  { table: 'nat', parent: 'POSTROUTING', chain: NAT_CHAIN },
  { table: 'filter', parent: 'FORWARD', chain: FORWARD_CHAIN },
] as const;

export type IptablesCommand = 'iptables' | 'iptables-restore' | 'iptables-save' | 'ip6tables' | 'ip6tables-restore' | 'ip6tables-save';
export type IptablesRunner = (cmd: IptablesCommand, args: readonly string[], stdin?: string) => Promise<string>;

/** The commands of one family. */
interface Family {
  readonly tables: 'iptables' | 'ip6tables';
  readonly restore: 'iptables-restore' | 'ip6tables-restore';
  readonly save: 'iptables-save' | 'ip6tables-save';
  readonly multicast: string;
}
const V4: Family = { tables: 'iptables', restore: 'iptables-restore', save: 'iptables-save', multicast: '224.0.0.0/4' };
const V6: Family = { tables: 'ip6tables', restore: 'ip6tables-restore', save: 'ip6tables-save', multicast: 'ff00::/8' };

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

/** The iptables-restore script of the IPv4 rules; `renderRestore(p, 'ipv6')` the ip6tables-restore one (p.ipv6's networks). */
export function renderRestore(p: MasqPolicy, family: 'ipv4' | 'ipv6' = 'ipv4'): string {
  const nets: MasqNetworks | undefined = family === 'ipv6' ? p.ipv6 : p.ipv4;
  if (!nets) throw new Error(`renderRestore: the policy has no ${family === 'ipv6' ? 'IPv6' : 'IPv4'} networks`);
  const multicast = family === 'ipv6' ? V6.multicast : V4.multicast;
  const pods = nets.podNetwork.toString();
  const node = nets.nodeSubnet.toString();
  const lines = ['*nat', `:${NAT_CHAIN} - [0:0]`];
  if (p.masquerade) {
    lines.push(
      `-A ${NAT_CHAIN} -s ${pods} -d ${pods} -j RETURN`,
      `-A ${NAT_CHAIN} -s ${pods} ! -d ${multicast} -j MASQUERADE --random-fully`,
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
  private last = new Map<Family, { listing: string; script: string }>();

  constructor(private readonly run: IptablesRunner = runIptables) {}

  async ensure(policy: MasqPolicy): Promise<boolean> {
    let wrote = false;
    for (const [f, nets, name] of [[V4, policy.ipv4, 'ipv4'], [V6, policy.ipv6, 'ipv6']] as const) {
      if (nets) {
        wrote = (await this.ensureFamily(f, renderRestore(policy, name))) || wrote;
      } else if (this.last.has(f) || !this.checkedGone.has(f)) {
        // No networks of this family now: twill's chains from an earlier run of it go, checked once.
        await this.removeFamily(f).catch((err: Error) => {
          if (!(err instanceof IptablesUnavailableError)) throw err;
        });
        this.checkedGone.add(f);
      }
    }
    return wrote;
  }

  private readonly checkedGone = new Set<Family>();

  async remove(): Promise<boolean> {
    const v4 = await this.removeFamily(V4);
    // A host without ip6tables has no IPv6 chains of ours.
    const v6 = await this.removeFamily(V6).catch((err: Error) => {
      if (err instanceof IptablesUnavailableError) return false;
      throw err;
    });
    return v4 || v6;
  }

  private async ensureFamily(f: Family, script: string): Promise<boolean> {
    const listing = await this.listing(f);
    const last = this.last.get(f);
    if (last && script === last.script && listing === last.listing && (await this.jumpsPresent(f))) return false;
    await this.run(f.restore, ['--noflush', '-w'], script);
    for (const j of JUMPS) {
      if (!(await this.hasJump(f, j.table, j.parent, j.chain))) {
        await this.run(f.tables, ['-w', '-t', j.table, '-I', j.parent, '1', '-m', 'comment', '--comment', 'twill', '-j', j.chain]);
      }
    }
    this.last.set(f, { script, listing: await this.listing(f) });
    return true;
  }

  private async removeFamily(f: Family): Promise<boolean> {
    this.last.delete(f);
    let removed = false;
    for (const j of JUMPS) {
      while (await this.hasJump(f, j.table, j.parent, j.chain)) {
        await this.run(f.tables, ['-w', '-t', j.table, '-D', j.parent, '-m', 'comment', '--comment', 'twill', '-j', j.chain]);
        removed = true;
      }
      const exists = await this.run(f.tables, ['-w', '-t', j.table, '-S', j.chain]).then(() => true, () => false);
      if (exists) {
        await this.run(f.tables, ['-w', '-t', j.table, '-F', j.chain]);
        await this.run(f.tables, ['-w', '-t', j.table, '-X', j.chain]);
        removed = true;
      }
    }
    return removed;
  }

  private async jumpsPresent(f: Family): Promise<boolean> {
    for (const j of JUMPS) if (!(await this.hasJump(f, j.table, j.parent, j.chain))) return false;
    return true;
  }

  private hasJump(f: Family, table: string, parent: string, chain: string): Promise<boolean> {
    return this.run(f.tables, ['-w', '-t', table, '-C', parent, '-m', 'comment', '--comment', 'twill', '-j', chain]).then(() => true, (err: Error) => {
      if (err instanceof IptablesUnavailableError) throw err;
      return false;
    });
  }

  /** twill's rules as iptables-save (ip6tables-save) prints them. */
  private async listing(f: Family): Promise<string> {
    const out = await this.run(f.save, []);
    return out.split('\n').filter((l) => l.startsWith(`-A ${NAT_CHAIN} `) || l.startsWith(`-A ${FORWARD_CHAIN} `)).join('\n');
  }
}
