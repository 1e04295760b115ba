/**
 * The kernel settings the overlay depends on, read from /proc/sys of the
 * namespace twill diagnose runs in:
 * - net.ipv4.ip_forward (and net.ipv6.conf.all.forwarding in dual stack):
 *   without it no pod traffic of that family crosses the node (FAIL);
 * - rp_filter: the kernel applies the higher of `all` and the device's value.
 *   Strict mode (1) on the overlay device drops packets whose reverse route
 *   leaves by another device (WARN); on the external interface it is shown
 *   for information.
 * An unreadable file is reported as WARN, never thrown.
 */
import { readFileSync } from 'fs';
import { Findings } from './findings';

const TOPIC = 'sysctl';

/** Reads one /proc/sys value; undefined when it cannot be read (no such device, no procfs). */
export type SysctlReader = (path: string) => string | undefined;

export const procSysctl: SysctlReader = (path) => {
  try {
    return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
  } catch {
    return undefined;
  }
};

const RP_MODES: Readonly<Record<number, string>> = { 0: 'off', 1: 'strict', 2: 'loose' };

export interface SysctlCheck {
  readonly extIface?: string;
  /** The running backend instance's own device (flannel.1, vx4789.2, flannel.ipip, flannel0, flannel1), when it exists. */
  readonly overlayDevice?: string;
  /** This node carries IPv6 pod traffic (dual stack). */
  readonly ipv6?: boolean;
}

/** One forwarding switch (net.ipv4.ip_forward or net.ipv6.conf.all.forwarding): without it no pod traffic of that family crosses the node. */
function checkForwarding(name: string, out: Findings, read: SysctlReader): void {
  const path = name.replace(/\./g, '/');
  const value = read(path);
  if (value === undefined) {
    out.warn(TOPIC, `cannot read /proc/sys/${path}`, 'run twill diagnose on the node itself, with /proc mounted');
  } else if (value === '1') {
    out.ok(TOPIC, `${name} = 1 (the node forwards ${name.includes('ipv6') ? 'IPv6 ' : ''}pod traffic)`);
  } else {
    out.fail(TOPIC, `${name} = ${value}: the node forwards no ${name.includes('ipv6') ? 'IPv6 ' : ''}pod traffic`,
      `sysctl -w ${name}=1, and persist it in /etc/sysctl.d/ (e.g. 99-twill.conf: ${name} = 1)`);
  }
}

export function checkSysctls(c: SysctlCheck, out: Findings, read: SysctlReader = procSysctl): void {
  checkForwarding('net.ipv4.ip_forward', out, read);
  if (c.ipv6) checkForwarding('net.ipv6.conf.all.forwarding', out, read);

  const all = rpFilter(read, 'all');
  if (all === undefined) {
    out.warn(TOPIC, 'cannot read net.ipv4.conf.all.rp_filter', 'run twill diagnose on the node itself, with /proc mounted');
    return;
  }
  const parts = [`all=${all}`];
  if (c.extIface) {
    const ext = rpFilter(read, c.extIface);
    if (ext !== undefined) parts.push(`${c.extIface}=${ext} (effective ${describe(Math.max(all, ext))})`);
  }
  let strictOverlay: number | undefined;
  if (c.overlayDevice) {
    const dev = rpFilter(read, c.overlayDevice);
    if (dev !== undefined) {
      parts.push(`${c.overlayDevice}=${dev} (effective ${describe(Math.max(all, dev))})`);
      if (Math.max(all, dev) === 1) strictOverlay = dev;
    }
  }
  if (strictOverlay === undefined) {
    out.ok(TOPIC, `rp_filter ${parts.join(', ')}`);
    return;
  }
  const dev = c.overlayDevice!;
  out.warn(TOPIC, `strict reverse-path filtering on ${dev} (rp_filter ${parts.join(', ')}): packets from pods whose reverse route leaves by another device are dropped`,
    `use loose mode: sysctl -w net/ipv4/conf/${dev}/rp_filter=2 (the kernel applies the higher of all and the device, so 0 does not help while all=1); persist it in /etc/sysctl.d/`);
}

function rpFilter(read: SysctlReader, dev: string): number | undefined {
  const v = read(`net/ipv4/conf/${dev}/rp_filter`);
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

function describe(mode: number): string {
  return `${mode}: ${RP_MODES[mode] ?? 'unknown'}`;
}

/**
 * Peers on this node's link each need a neighbour (ARP) entry; past
 * gc_thresh3 (default 1024) the kernel refuses new ones and those peers
 * cannot be reached directly. Said only when the cluster is that large.
 */
export function checkNeighbourTable(peers: number, out: Findings, read: SysctlReader = procSysctl): void {
  const limit = Number(read('net/ipv4/neigh/default/gc_thresh3'));
  if (!Number.isInteger(limit) || limit <= 0 || peers < limit) return;
  out.warn(TOPIC, `the cluster has ${peers} peers, at least net.ipv4.neigh.default.gc_thresh3 = ${limit} neighbour entries: if they share this node's link, the kernel cannot resolve them all (twilld logs "neighbour table is full")`,
    `raise it above the number of nodes on the link, with gc_thresh2 below it: sysctl -w net.ipv4.neigh.default.gc_thresh3=${nextPowerOfTwo(peers * 2)} net.ipv4.neigh.default.gc_thresh2=${nextPowerOfTwo(peers)}; persist both in /etc/sysctl.d/`);
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(2, n)));
}
