/**
 * twill's own native addon for twilld's process (native/: the notification
 * socket, event-socket.c, nftables through libnftables, nft-library.c, and
 * the bundle's text mapped from its file, mapped-source.c, and the cap on
 * malloc arenas, malloc-arenas.c), loaded once, when first needed.
 */
import { findNativeBuild, nativeBuildCandidates } from '../native-build';

export type BatchCallback = (messages: Buffer | null, lost: boolean, drained: boolean, error: string | null, skipped: Buffer | null) => void;

export interface NetlinkAddon {
  open(groups: number[], recvBufferSize: number, skipTypes: number[], onBatch: BatchCallback, protocol?: number): object;
  close(handle: object): void;
  ref(handle: object): void;
  unref(handle: object): void;
  /** null when libnftables can be used in this process, else why not. */
  nftAvailable(): string | null;
  nftRun(json: boolean, commands: string, done: (error: string | null, output: string) => void): void;
  /** An ASCII file's text as a string over its mapped pages; null when it cannot be mapped. */
  mapLatin1(file: string): string | null;
  /** An open file's bytes over its mapped pages (read-only); null when it cannot be mapped. */
  mapBytes(fd: number): Buffer | null;
  /** Caps glibc's malloc arenas for threads that allocate from now on; false where refused. */
  limitMallocArenas(n: number): boolean;
}

const ADDON = 'twill_netlink_events.node';

let addon: NetlinkAddon | undefined;

/** Throws when the addon is not built. */
export function loadNetlinkAddon(): NetlinkAddon {
  if (addon) return addon;
  const file = findNativeBuild(ADDON);
  if (!file) throw new Error(`the netlink event addon is not built (looked for ${nativeBuildCandidates(ADDON).join(', ')}); run \`npm run build:native\``);
  addon = require(file) as NetlinkAddon;
  return addon;
}
