/**
 * Can this machine run the userspace datapath? Checked from twilld without
 * loading native code: /dev/net/tun must exist and open read-write, and the
 * engine (twill-dataplane) must have been compiled.
 */
import { closeSync, constants, openSync, statSync } from 'fs';
import { findDataplane, dataplaneCandidates } from './native-engine';

export const TUN_DEVICE = '/dev/net/tun';
export const TUN_MISSING = '/dev/net/tun is missing: load the tun module (modprobe tun) / give the container the device (--device /dev/net/tun)';

export interface Availability {
  readonly ok: boolean;
  readonly reason?: string;
}

export function tunAvailable(): Availability {
  try {
    if (!statSync(TUN_DEVICE).isCharacterDevice()) return { ok: false, reason: `${TUN_DEVICE} is not a character device: ${TUN_MISSING}` };
  } catch {
    return { ok: false, reason: TUN_MISSING };
  }
  try {
    closeSync(openSync(TUN_DEVICE, constants.O_RDWR));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    if (code === 'ENXIO' || code === 'ENODEV') return { ok: false, reason: TUN_MISSING };
    return { ok: false, reason: `cannot open ${TUN_DEVICE} (${code}): run as root, or allow the device in the container's device cgroup` };
  }
  return { ok: true };
}

/** The TUN device is usable and the native engine is built. */
export function userspaceDatapathAvailable(): Availability {
  const tun = tunAvailable();
  if (!tun.ok) return tun;
  if (!findDataplane()) {
    return { ok: false, reason: `the userspace datapath engine is not built (no ${dataplaneCandidates()[0]}): run "npm ci" or "npm run build:native"` };
  }
  return { ok: true };
}
