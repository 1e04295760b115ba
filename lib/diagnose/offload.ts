/**
 * Checksum offload of the vxlan device, read with `ethtool -k <dev>` (the
 * kernel exposes it only through the ethtool ioctl/netlink family, not in
 * /sys). Offload is normally right; the known exception is a node whose
 * public IP is NATed: the NAT rewrites the outer header of packets whose
 * UDP checksum the device left to "offload", and receivers drop them
 * (flannel-io/flannel#1279). Without ethtool the state is unknown (WARN).
 */
import { execFile } from 'child_process';
import { Findings } from './findings';

const TOPIC = 'offload';

export interface OffloadState {
  /** Feature name → on/off, as `ethtool -k` prints them ('tx-checksumming', 'tx-checksum-ip-generic', …). */
  readonly features: ReadonlyMap<string, boolean>;
}

/** Parses `ethtool -k` output: `name: on|off [fixed]` lines, indented or not. */
export function parseEthtoolFeatures(text: string): OffloadState {
  const features = new Map<string, boolean>();
  for (const line of text.split('\n')) {
    const m = /^\s*([a-z0-9-]+):\s+(on|off)\b/.exec(line);
    if (m) features.set(m[1], m[2] === 'on');
  }
  return { features };
}

type EthtoolResult = { kind: 'ok'; text: string } | { kind: 'missing' } | { kind: 'error'; message: string };

function runEthtool(dev: string): Promise<EthtoolResult> {
  return new Promise((resolve) => {
    execFile('ethtool', ['-k', dev], { timeout: 5000 }, (err, stdout, stderr) => {
      if (!err) resolve({ kind: 'ok', text: stdout });
      else if ((err as NodeJS.ErrnoException).code === 'ENOENT') resolve({ kind: 'missing' });
      else resolve({ kind: 'error', message: (stderr || err.message).trim().split('\n')[0] });
    });
  });
}

export interface OffloadCheck {
  readonly device: string;
  /** True when the public IP is not an address of the external interface (a NAT between nodes). */
  readonly natted: boolean;
}

export async function checkOffload(c: OffloadCheck, out: Findings): Promise<void> {
  const r = await runEthtool(c.device);
  if (r.kind === 'missing') {
    out.warn(TOPIC, `checksum offload of ${c.device} unknown: ethtool is not installed`,
      'install ethtool (apt-get install ethtool / dnf install ethtool) and run twill diagnose again');
    return;
  }
  if (r.kind === 'error') {
    out.warn(TOPIC, `checksum offload of ${c.device} unknown: ethtool -k ${c.device} failed (${r.message})`, `run \`ethtool -k ${c.device}\` by hand as root`);
    return;
  }
  const f = parseEthtoolFeatures(r.text).features;
  const state = (name: string) => (f.has(name) ? (f.get(name) ? 'on' : 'off') : 'unknown');
  const summary = `rx-checksumming ${state('rx-checksumming')}, tx-checksumming ${state('tx-checksumming')} (tx-checksum-ip-generic ${state('tx-checksum-ip-generic')})`;
  if (c.natted && f.get('tx-checksum-ip-generic') === true) {
    out.warn(TOPIC, `${c.device}: ${summary}, and this node's public IP is NATed: the NAT can corrupt offloaded VXLAN checksums`,
      `if pods on other nodes cannot reach this node's pods, run \`ethtool -K ${c.device} tx-checksum-ip-generic off\` (persist it with a udev rule on ${c.device})`);
    return;
  }
  out.ok(TOPIC, `${c.device}: ${summary}`);
}
