/**
 * Ending a daemon twilld started (wireguard-go, BIRD) by its PID: it may be
 * our child or one an earlier twilld started and this one adopted.
 */
import { readFileSync } from 'fs';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether the process runs; a zombie (our own child not reaped yet) is gone for every purpose here. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `ms`; resolves once the process is gone, true when it had to be killed. */
export async function killAndWait(pid: number, ms: number): Promise<boolean> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return false;
  }
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await sleep(20);
  if (!alive(pid)) return false;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return false;
  }
  while (alive(pid)) await sleep(20);
  return true;
}
