/**
 * The tunnel guard's nftables table as a thing to read and write: `nft -j
 * list table ip twill_guard` parsed (listing.ts), and scripts applied as one
 * atomic `nft -f -` transaction (no value from etcd ever reaches a command
 * line). Both run in twilld's process through libnftables where it can
 * (nftRunner, lib/masq/nftables.ts), else as the nft command.
 *
 * Failure semantics: a missing table reads as undefined; a missing `nft`
 * rejects with `GuardUnavailableError`; a refused script rejects with nft's
 * message (the transaction left the table as it was).
 */
import { nftRunner, type NftRunner } from '../masq/nftables';
import { parseGuardListing } from './listing';
import type { UnderlayFamily } from '../../backends/intake';
import { GUARD_TABLE, removalScript, type SeenGuard } from './plan';

export class GuardUnavailableError extends Error {
  constructor(detail: string) {
    super(`cannot filter tunnel traffic with nftables: ${detail}. Install nftables (apt-get install nftables), ` +
      'or run with --tunnel-guard=false to stop trying (the udp and userspace ipip engines check senders themselves)');
    this.name = 'GuardUnavailableError';
  }
}

export const runGuardNft: NftRunner = nftRunner((detail) => new GuardUnavailableError(detail));

export class GuardTable {
  /** The table of one underlay family: `ip twill_guard` (4) or `ip6 twill_guard` (6). */
  constructor(private readonly run: NftRunner = runGuardNft, readonly family: UnderlayFamily = 4) {}

  /** The same nft, for the other family's table. */
  withFamily(family: UnderlayFamily): GuardTable {
    return family === this.family ? this : new GuardTable(this.run, family);
  }

  /** The table as the kernel holds it; undefined when there is none. */
  async read(): Promise<SeenGuard | undefined> {
    let text: string;
    try {
      text = await this.run(['-j', 'list', 'table', this.family === 6 ? 'ip6' : 'ip', GUARD_TABLE]);
    } catch (err) {
      if (err instanceof GuardUnavailableError) throw err;
      if (/No such file or directory|does not exist/i.test((err as Error).message)) return undefined;
      throw err;
    }
    return parseGuardListing(text);
  }

  /** The table's named counters alone (a few lines of nft's output, whatever the sets hold); undefined when there is no table. */
  async readCounters(): Promise<SeenGuard['counters'] | undefined> {
    let text: string;
    try {
      text = await this.run(['-j', 'list', 'counters', 'table', this.family === 6 ? 'ip6' : 'ip', GUARD_TABLE]);
    } catch (err) {
      if (err instanceof GuardUnavailableError) throw err;
      if (/No such file or directory|does not exist/i.test((err as Error).message)) return undefined;
      throw err;
    }
    return parseGuardListing(text).counters;
  }

  /** Applies a script from plan.ts in one transaction. */
  async write(script: string): Promise<void> {
    await this.run(['-f', '-'], script);
  }

  /** Deletes the table; resolves with whether there was one. */
  async remove(): Promise<boolean> {
    if (!(await this.read())) return false;
    await this.write(removalScript(this.family));
    return true;
  }
}
