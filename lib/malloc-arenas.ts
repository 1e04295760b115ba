/**
 * twilld's threads share one malloc arena (why, and the figures:
 * lib/netlink/native/malloc-arenas.c). Run by the launcher before the daemon
 * bundle, so that the helper threads' first allocations already find the
 * cap; an operator's own MALLOC_ARENA_MAX or glibc.malloc tunables win.
 */
import { loadNetlinkAddon } from './netlink/addon';

export function shareOneMallocArena(env: NodeJS.ProcessEnv = process.env): void {
  if (env.MALLOC_ARENA_MAX !== undefined || env.GLIBC_TUNABLES?.includes('glibc.malloc.arena_max')) return;
  try {
    loadNetlinkAddon().limitMallocArenas(1);
  } catch {
    // Not built: twilld says so itself when it needs the addon; memory is all this costs.
  }
}
