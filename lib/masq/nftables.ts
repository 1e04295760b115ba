/**
 * Masquerade and forward rules for the pod network, as flanneld's
 * `--ip-masq` and `--iptables-forward-rules` install them, in an nftables
 * table of twill's own (`ip twill`), so nothing else's rules are touched.
 *
 * Every change is one atomic `nft -f -` transaction whose script arrives on
 * stdin: the addresses in it are IPNet values formatted by twill, and no
 * value from etcd is ever placed on a command line.
 * `ensure()` is idempotent and cheap when nothing changed: it compares the
 * kernel's listing with the one it saw after its last write, and rewrites
 * the table only when someone altered or removed it.
 */
import { execFile } from 'child_process';
import type { IPNet } from '../ip';
import type { NatRules } from './nat-rules';

export const TABLE = 'twill';

export interface MasqPolicy {
  readonly podNetwork: IPNet;
  readonly nodeSubnet: IPNet;
  readonly masquerade: boolean;
  readonly forwardRules: boolean;
}

export type NftRunner = (args: readonly string[], stdin?: string) => Promise<string>;

export class NftablesUnavailableError extends Error {
  constructor(detail: string) {
    super(`cannot program NAT rules: ${detail}. Install nftables (apt-get install nftables) or run without --ip-masq`);
    this.name = 'NftablesUnavailableError';
  }
}

/**
 * Runs `nft` (a script on stdin when given); a missing nft command rejects
 * with `unavailable(detail)`, so each user says what it cannot do without
 * it (the NAT rules here, the tunnel guard in lib/guard).
 */
export function nftRunner(unavailable: (detail: string) => Error): NftRunner {
  return (args, stdin) =>
    new Promise((resolve, reject) => {
      const child = execFile('nft', [...args], { timeout: 10_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return reject(unavailable('the nft command is not installed'));
        reject(new Error(`nft ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      });
      if (stdin !== undefined) child.stdin?.end(stdin);
    });
}

export const runNft: NftRunner = nftRunner((detail) => new NftablesUnavailableError(detail));

/** The nft script that makes table `ip twill` hold exactly the policy's rules. */
export function renderRules(p: MasqPolicy): string {
  const pods = p.podNetwork.toString();
  const node = p.nodeSubnet.toString();
  const lines = [`table ip ${TABLE} {}`, `flush table ip ${TABLE}`, `table ip ${TABLE} {`];
  if (p.masquerade) {
    lines.push(
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      // Pod to pod keeps its source: the overlay is NAT-free.
      `    ip saddr ${pods} ip daddr ${pods} return`,
      `    ip saddr ${pods} ip daddr != 224.0.0.0/4 masquerade fully-random`,
      // Traffic from outside to this node's own pods is not rewritten…
      `    ip saddr != ${pods} ip daddr ${node} return`,
      // …but the host's own traffic into the overlay is, so replies come back through it.
      `    ip saddr != ${pods} ip daddr ${pods} masquerade fully-random`,
      '  }',
    );
  }
  if (p.forwardRules) {
    lines.push(
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    ip saddr ${pods} accept`,
      `    ip daddr ${pods} accept`,
      '  }',
    );
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

export class NftablesMasq implements NatRules {
  readonly kind = 'nftables';
  private lastListing?: string;
  private lastScript?: string;

  constructor(private readonly run: NftRunner = runNft) {}

  /** Installs the rules unless the kernel already holds exactly them; returns whether it wrote. */
  async ensure(policy: MasqPolicy): Promise<boolean> {
    const script = renderRules(policy);
    const listing = await this.listing();
    if (script === this.lastScript && listing !== undefined && listing === this.lastListing) return false;
    await this.run(['-f', '-'], script);
    this.lastScript = script;
    this.lastListing = await this.listing();
    return true;
  }

  /** Removes twill's table, if present. */
  async remove(): Promise<boolean> {
    this.lastScript = undefined;
    this.lastListing = undefined;
    if ((await this.listing()) === undefined) return false;
    await this.run(['delete', 'table', 'ip', TABLE]);
    return true;
  }

  private async listing(): Promise<string | undefined> {
    try {
      return await this.run(['list', 'table', 'ip', TABLE]);
    } catch (err) {
      if (err instanceof NftablesUnavailableError) throw err;
      return undefined; // no such table
    }
  }
}
