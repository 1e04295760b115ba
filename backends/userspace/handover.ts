/**
 * Handing a running datapath from one twilld to the next across a restart.
 *
 * With twill-dataplane, the handover is the control socket: the stopping
 * twilld sends `detach` and closes its connection; the program keeps
 * forwarding with the last table for a grace period; the next twilld's
 * EngineSupervisor connects to the same socket and attaches. The engine
 * never stops, so a restart of twilld costs no packet (engine-supervisor.ts).
 *
 * What is left here is for upgrades: before twill-dataplane, a stopping
 * twilld left a Node.js "engine host" running and recorded its PID in
 * /run/twill/datapath-<netns>-<tun>.pid. That host holds the TUN device and
 * the port; ending it — after checking it still is such a host, in our
 * namespace — lets the first twill-dataplane take them over.
 */
import { readFileSync, readlinkSync, rmSync } from 'fs';
import * as path from 'path';
import { running } from '../../lib/process-state';

const HANDOVER_DIR = '/run/twill';
const EXIT_WAIT_MS = 2000;

function netnsId(pid: number | 'self'): string {
  return readlinkSync(`/proc/${pid}/ns/net`).replace(/\D/g, '');
}

/** Ends the engine host a twill before twill-dataplane left running on `tunName`; true when there was one and it is gone. */
export async function endLegacyHost(tunName: string): Promise<boolean> {
  const file = path.join(HANDOVER_DIR, `datapath-${netnsId('self')}-${tunName}.pid`);
  let pid: number;
  try {
    pid = Number(readFileSync(file, 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !isLegacyHost(pid)) return false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // already gone
  }
  const deadline = Date.now() + EXIT_WAIT_MS;
  while (running(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  rmSync(file, { force: true });
  return !running(pid);
}

function isLegacyHost(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return (cmdline.includes('engine-host') || cmdline.includes('datapath-host')) && netnsId(pid) === netnsId('self');
  } catch {
    return false;
  }
}

