/**
 * Whether a process still holds what it had open (a listening socket, a TUN
 * queue, a pid file's lock), read from /proc. The agent, the lab and the tests
 * share this one reading.
 */
import { readdirSync, readFileSync } from 'fs';

/**
 * True while `pid` runs or is still exiting.
 *
 * A zombie has closed its files, but /proc shows a multithreaded process's
 * leader as a zombie as soon as the leader's own thread ends, while its other
 * threads may still be tearing down the shared file table. So a zombie counts
 * as gone only once it is the last thread of its group.
 */
export function running(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // "PID (comm) STATE ...": comm may hold spaces and parentheses, so the state follows the last ')'.
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  if (state !== 'Z' && state !== 'X') return true;
  try {
    return readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

/** The command name the kernel keeps for `pid` (`/proc/PID/comm`), or undefined once it is gone. */
export function commandName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}
