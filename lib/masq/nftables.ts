/**
 * Masquerade and forward rules for the pod network, as flanneld's
 * `--ip-masq` and `--iptables-forward-rules` install them, in an nftables
 * table of twill's own (`ip twill`), so nothing else's rules are touched;
 * with dual stack, the same rules for the IPv6 network and subnet in
 * `ip6 twill` (flanneld's MasqIP6Rules: ff00::/8 in place of 224.0.0.0/4),
 * written in the same transaction.
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
import { nftLibrary } from '../netlink/nft-library';

export const TABLE = 'twill';

export interface MasqNetworks {
  readonly podNetwork: IPNet;
  readonly nodeSubnet: IPNet;
}

export interface MasqPolicy {
  readonly masquerade: boolean;
  readonly forwardRules: boolean;
  /** The IPv4 network and this node's IPv4 subnet; absent in an IPv6-only network: no IPv4 rules. */
  readonly ipv4?: MasqNetworks;
  /** The IPv6 network and this node's IPv6 subnet (EnableIPv6 with an IPv6 lease); absent: no IPv6 rules. */
  readonly ipv6?: MasqNetworks;
}

/** Per family: nft's table family and address keyword, and the multicast range that is never masqueraded. */
const FAMILIES = {
  4: { table: 'ip', addr: 'ip', multicast: '224.0.0.0/4' },
  6: { table: 'ip6', addr: 'ip6', multicast: 'ff00::/8' },
} as const;

export type NftRunner = (args: readonly string[], stdin?: string) => Promise<string>;

export class NftablesUnavailableError extends Error {
  constructor(detail: string) {
    super(`cannot program NAT rules: ${detail}. Install nftables (apt-get install nftables) or run without --ip-masq`);
    this.name = 'NftablesUnavailableError';
  }
}

/**
 * Runs nft's commands (a script on stdin when given): in this process
 * through libnftables where it can (lib/netlink/nft-library.ts), else the
 * `nft` command. A missing nft command rejects with `unavailable(detail)`,
 * so each user says what it cannot do without it (the NAT rules here, the
 * tunnel guard in lib/guard). Either way a refusal rejects with
 * `nft <args> failed: <nft's message>`.
 */
export function nftRunner(unavailable: (detail: string) => Error): NftRunner {
  const exec = nftCommand(unavailable);
  return (args, stdin) => {
    const call = asLibraryCall(args, stdin);
    const library = call && nftLibrary();
    if (!call || !library || !('run' in library)) return exec(args, stdin);
    return library.run(call.commands, { json: call.json }).catch((err: unknown) => {
      throw new Error(`nft ${args.join(' ')} failed: ${(err as Error).message}`);
    });
  };
}

/**
 * The library's form of an nft command line: `-j` (JSON output), then
 * either `-f -` with the script on stdin or the command's words. Undefined
 * for any other option, which only the command understands.
 */
export function asLibraryCall(args: readonly string[], stdin?: string): { json: boolean; commands: string } | undefined {
  let json = false;
  let i = 0;
  for (; i < args.length && args[i].startsWith('-'); i++) {
    if (args[i] === '-j') json = true;
    else if (args[i] === '-f' && args[i + 1] === '-' && i + 2 === args.length && stdin !== undefined) return { json, commands: stdin };
    else return undefined;
  }
  if (i === args.length || stdin !== undefined) return undefined;
  return { json, commands: args.slice(i).join(' ') };
}

/** The `nft` command itself. */
export function nftCommand(unavailable: (detail: string) => Error): NftRunner {
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

/**
 * The nft script that makes table `ip twill` hold exactly the policy's
 * IPv4 rules and `ip6 twill` its IPv6 ones, or not exist when the policy
 * has no networks of that family.
 */
export function renderRules(p: MasqPolicy): string {
  const lines: string[] = [];
  for (const family of [4, 6] as const) {
    const nets = family === 4 ? p.ipv4 : p.ipv6;
    if (nets) lines.push(...familyRules(family, nets, p));
    // Created then deleted in the same transaction: gone whether it was there or not.
    else lines.push(`table ${FAMILIES[family].table} ${TABLE} {}`, `delete table ${FAMILIES[family].table} ${TABLE}`);
  }
  return lines.join('\n') + '\n';
}

function familyRules(family: 4 | 6, nets: MasqNetworks, p: MasqPolicy): string[] {
  const f = FAMILIES[family];
  const pods = nets.podNetwork.toString();
  const node = nets.nodeSubnet.toString();
  const t = `${f.table} ${TABLE}`;
  const lines = [`table ${t} {}`, `flush table ${t}`, `table ${t} {`];
  if (p.masquerade) {
    lines.push(
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      // Pod to pod keeps its source: the overlay is NAT-free.
      `    ${f.addr} saddr ${pods} ${f.addr} daddr ${pods} return`,
      `    ${f.addr} saddr ${pods} ${f.addr} daddr != ${f.multicast} masquerade fully-random`,
      // Traffic from outside to this node's own pods is not rewritten…
      `    ${f.addr} saddr != ${pods} ${f.addr} daddr ${node} return`,
      // …but the host's own traffic into the overlay is, so replies come back through it.
      `    ${f.addr} saddr != ${pods} ${f.addr} daddr ${pods} masquerade fully-random`,
      '  }',
    );
  }
  if (p.forwardRules) {
    lines.push(
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    ${f.addr} saddr ${pods} accept`,
      `    ${f.addr} daddr ${pods} accept`,
      '  }',
    );
  }
  lines.push('}');
  return lines;
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
    if (script === this.lastScript && listing === this.lastListing) return false;
    await this.run(['-f', '-'], script);
    this.lastScript = script;
    this.lastListing = await this.listing();
    return true;
  }

  /** Removes twill's tables (`ip twill`, `ip6 twill`), if present. */
  async remove(): Promise<boolean> {
    this.lastScript = undefined;
    this.lastListing = undefined;
    let removed = false;
    for (const family of ['ip', 'ip6']) {
      if ((await this.familyListing(family)) === undefined) continue;
      await this.run(['delete', 'table', family, TABLE]);
      removed = true;
    }
    return removed;
  }

  /** Both tables' listings (a missing one marked as such), to tell whether someone changed them since the last write. */
  private async listing(): Promise<string> {
    return `${(await this.familyListing('ip')) ?? '(no ip table)'}${(await this.familyListing('ip6')) ?? '(no ip6 table)'}`;
  }

  private async familyListing(family: 'ip' | 'ip6' | string): Promise<string | undefined> {
    try {
      return await this.run(['list', 'table', family, TABLE]);
    } catch (err) {
      if (err instanceof NftablesUnavailableError) throw err;
      return undefined; // no such table
    }
  }
}
