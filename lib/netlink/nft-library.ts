/**
 * nftables commands in twilld's own process, through libnftables (the
 * addon's nft-library.c): no fork of the daemon and no nft process per
 * command. Where the addon or libnftables.so.1 is missing, `nftLibrary()`
 * says so and callers run the `nft` command instead.
 */
import { loadNetlinkAddon, type NetlinkAddon } from './addon';

/** Runs nft commands (one transaction for a script); rejects with nft's own message when refused. */
export type NftLibraryRun = (commands: string, opts: { json: boolean }) => Promise<string>;

let usable: { run: NftLibraryRun } | { unavailable: string } | undefined;

export function nftLibrary(): { run: NftLibraryRun } | { unavailable: string } {
  if (usable) return usable;
  let addon: NetlinkAddon;
  try {
    addon = loadNetlinkAddon();
  } catch (err) {
    return (usable = { unavailable: (err as Error).message });
  }
  const why = addon.nftAvailable();
  if (why !== null) return (usable = { unavailable: why });
  const run: NftLibraryRun = (commands, { json }) =>
    new Promise((resolve, reject) => {
      addon.nftRun(json, commands, (error, output) => (error === null ? resolve(output) : reject(new Error(error.trim()))));
    });
  return (usable = { run });
}
