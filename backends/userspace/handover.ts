/**
 * Handing a running datapath from one twilld to the next across a restart.
 *
 * The outgoing host records its PID in a file named after its network
 * namespace and TUN device and keeps forwarding; the incoming host, when
 * the engine cannot take the TUN or the port (EBUSY, EADDRINUSE), ends that
 * PID — after checking it is still a datapath host in the same namespace —
 * and starts again. The gap is the time one process needs to exit, not a
 * whole agent start-up.
 */
import { mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'fs';
import * as path from 'path';

const HANDOVER_DIR = '/run/twill';
const EXIT_WAIT_MS = 2000;

function netnsId(pid: number | 'self'): string {
  return readlinkSync(`/proc/${pid}/ns/net`).replace(/\D/g, '');
}

function handoverFile(tunName: string): string {
  return path.join(HANDOVER_DIR, `datapath-${netnsId('self')}-${tunName}.pid`);
}

export function recordHandover(tunName: string, pid: number): void {
  const file = handoverFile(tunName);
  mkdirSync(HANDOVER_DIR, { recursive: true, mode: 0o755 });
  writeFileSync(`${file}.tmp`, `${pid}\n`, { mode: 0o644 });
  renameSync(`${file}.tmp`, file);
}

/** Removes the record if it is still this host's. */
export function clearHandover(tunName: string, pid: number): void {
  try {
    const file = handoverFile(tunName);
    if (readFileSync(file, 'utf8').trim() === String(pid)) rmSync(file);
  } catch {
    // nothing recorded
  }
}

/** Ends the recorded predecessor; true when there was one and it is gone. */
export function takeOverFrom(tunName: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(handoverFile(tunName), 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !isEngineHost(pid)) return false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return true; // already gone
  }
  const deadline = Date.now() + EXIT_WAIT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    Atomics.wait(pause, 0, 0, 2);
  }
  return false;
}

function isEngineHost(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    // datapath-host: its name before twill 0.2, so an upgrade takes over the running engine too.
    return (cmdline.includes('engine-host') || cmdline.includes('datapath-host')) && netnsId(pid) === netnsId('self');
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is as good as gone: it holds no files
  } catch {
    return false;
  }
}
