/**
 * Ending a daemon twilld started (wireguard-go, BIRD) by its PID: it may be
 * our child or one an earlier twilld started and this one adopted.
 */
import { running as alive } from '../lib/process-state';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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
