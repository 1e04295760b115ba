/**
 * What migration tests and the migration benchmark watch: every pod pinging
 * every other pod, the backends each lease says its node terminates, and
 * what each backend leaves in a node's kernel.
 */
import type { TwillCluster } from './twill-cluster';
import { PREFIX } from './twill-cluster';
import { startPingStream, type PingStream, type PingStreamReport } from './ping';
import { readFileSync } from 'fs';
import { netnsPids } from './netns';
import { waitFor } from './wait';

function readComm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** What each backend leaves in a node's kernel: its devices (the IPv6 overlay's where it has its own) and its route protocol (both families). */
export const FOOTPRINT: Record<string, { device?: string; deviceV6?: string; protocol: number }> = {
  udp: { device: 'flannel0', protocol: 120 },
  vxlan: { device: 'flannel.1', deviceV6: 'flannel-v6.1', protocol: 117 },
  'host-gw': { protocol: 118 },
  ipip: { device: 'flannel.ipip', protocol: 119 },
  wireguard: { device: 'flannel-wg', protocol: 125 },
  // BIRD's routes (protocol bird); BIRD itself is looked for too.
  bgp: { protocol: 12 },
};

export interface LeaseJson {
  PublicIP: string;
  BackendType?: string;
  BackendData?: { VNI?: number; VtepMAC?: string };
  TwillBackends?: { Type: string; Settings?: Record<string, unknown>; Data?: { VNI?: number; VtepMAC?: string } }[];
}

export async function leases(tc: TwillCluster): Promise<Map<string, LeaseJson>> {
  const all = await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).strings();
  return new Map(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as LeaseJson]));
}

/** The backends a lease says its node terminates. */
export function terminates(l: LeaseJson): string[] {
  return [...new Set([l.BackendType ?? 'udp', ...(l.TwillBackends ?? []).map((b) => b.Type)])];
}

export async function hasFootprint(tc: TwillCluster, node: number, type: string): Promise<string[]> {
  const f = FOOTPRINT[type];
  const found: string[] = [];
  const links = await tc.net.ip(node, ['-o', 'link', 'show']);
  for (const device of [f.device, f.deviceV6]) if (device && links.includes(` ${device}:`)) found.push(`device ${device}`);
  for (const family of ['-4', '-6']) {
    const routes = (await tc.net.ip(node, [family, 'route', 'show', 'proto', String(f.protocol)])).trim();
    if (routes) found.push(`${family === '-6' ? 'IPv6 ' : ''}routes proto ${f.protocol}: ${routes.replace(/\n/g, '; ')}`);
  }
  if (type === 'udp' && (await tc.net.exec(node, ['ss', '-Hlun', 'sport = :8285'])).stdout.trim()) found.push('a socket on UDP 8285');
  if (type === 'bgp') {
    for (const pid of await netnsPids(tc.nodeNs(node))) {
      if (readComm(pid) === 'bird') found.push(`BIRD (PID ${pid})`);
    }
  }
  return found;
}

/** Converged on `type`: every one of `nodes` leases says so and nothing else, and no node holds anything of `old`. */
export async function convergedOn(tc: TwillCluster, nodes: number, type: string, old: string): Promise<boolean> {
  const ls = [...(await leases(tc)).values()];
  if (ls.length !== nodes || !ls.every((l) => terminates(l).join() === type && l.TwillBackends === undefined)) return false;
  for (let i = 0; i < nodes; i++) if ((await hasFootprint(tc, i, old)).length) return false;
  return true;
}

/** Device names on a node, from `ip -o link`. */
export async function devices(tc: TwillCluster, node: number): Promise<string[]> {
  return [...(await tc.net.ip(node, ['-o', 'link', 'show'])).matchAll(/^\d+: ([^:@]+)[:@]/gm)].map((m) => m[1]);
}

function sorted(o: Record<string, unknown> | undefined): string {
  return JSON.stringify(Object.entries(o ?? {}).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Every one of `nodes` leases lists exactly one backend: `type` with the
 * identity `settings` (undefined: flanneld's defaults, so no TwillBackends).
 */
export async function leasesOn(tc: TwillCluster, nodes: number, type: string, settings?: Record<string, unknown>): Promise<boolean> {
  const ls = [...(await leases(tc)).values()];
  if (ls.length !== nodes) return false;
  return ls.every((l) => {
    if (settings === undefined) return (l.BackendType ?? 'udp') === type && l.TwillBackends === undefined;
    return l.TwillBackends?.length === 1 && l.TwillBackends[0].Type === type && sorted(l.TwillBackends[0].Settings) === sorted(settings);
  });
}

/** Converged on one backend's settings: every lease lists only it, and no node has the old backend's device any more. */
export async function convergedOnSettings(tc: TwillCluster, nodes: number, type: string, settings: Record<string, unknown> | undefined, oldDevice: string): Promise<boolean> {
  if (!(await leasesOn(tc, nodes, type, settings))) return false;
  for (let i = 0; i < nodes; i++) if ((await devices(tc, i)).includes(oldDevice)) return false;
  return true;
}

export interface ProbeReport {
  sent: number;
  lost: number;
  maxGapMs: number;
  /** One line per stream that lost probes. */
  lines: string[];
}

export class Probes {
  private constructor(private readonly streams: { label: string; stream: PingStream }[]) {}

  /** Every pod of `nodes` (default: all) pings every other at `pps`, over each of `families` (default IPv4). */
  static async start(tc: TwillCluster, pps: number, nodes: readonly number[] = Array.from({ length: tc.size }, (_, i) => i), families: readonly (4 | 6)[] = [4]): Promise<Probes> {
    const streams: { label: string; stream: PingStream }[] = [];
    try {
      for (const family of families) {
        for (const a of nodes) {
          for (const b of nodes) {
            if (a === b) continue;
            const to = family === 6 ? tc.podIpv6(b) : tc.podIp(b);
            streams.push({ label: `pod ${a} -> pod ${b} (IPv${family})`, stream: await startPingStream(tc.podNs(a), to, pps) });
          }
        }
      }
      await Promise.all(streams.map((s) => s.stream.waitForReplies(20, 5000)));
    } catch (err) {
      await Promise.all(streams.map((s) => s.stream.stop().catch(() => undefined)));
      throw err;
    }
    return new Probes(streams);
  }

  async stop(): Promise<ProbeReport> {
    const reports: [string, PingStreamReport][] = await Promise.all(this.streams.map(async (s) => [s.label, await s.stream.stop()] as [string, PingStreamReport]));
    return {
      sent: reports.reduce((n, [, r]) => n + r.sent, 0),
      lost: reports.reduce((n, [, r]) => n + r.lost, 0),
      maxGapMs: Math.max(...reports.map(([, r]) => r.maxGapMs)),
      lines: reports.filter(([, r]) => r.lost > 0).map(([label, r]) => `${label}: lost ${r.lost} (seqs ${r.lostSeqs.slice(0, 10).join(',')})`),
    };
  }
}


export interface MigrationReport extends ProbeReport {
  /** From the config write to every node converged (convergedOn). */
  convergedMs: number;
}

/**
 * Every pod pinging every other at `pps` while `write` moves the cluster
 * from backend `from` to `to`; `during` runs right after the write, with the
 * probes still going. Ends a second after every node converged, logging the
 * figures; the caller judges them.
 */
export async function migrateUnderProbes(
  tc: TwillCluster, from: string, to: string, write: () => Promise<unknown>,
  opts: { pps?: number; during?: () => Promise<void>; families?: readonly (4 | 6)[] } = {},
): Promise<MigrationReport> {
  const probes = await Probes.start(tc, opts.pps ?? 200, undefined, opts.families);
  let report: ProbeReport | undefined;
  try {
    const written = Date.now();
    await write();
    await opts.during?.();
    await waitFor(`every node on ${to} with nothing of ${from} left`, () => convergedOn(tc, tc.size, to, from), 60_000, 250);
    const convergedMs = Date.now() - written;
    await new Promise((r) => setTimeout(r, 1000));
    report = await probes.stop();
    console.log(`      ${from} -> ${to}${opts.families ? ` (IPv${opts.families.join(' + IPv')})` : ''}: ${report.sent} probes, ${report.lost} lost, longest reply gap ${Math.round(report.maxGapMs)} ms; converged ${convergedMs} ms after the config write`);
    return { ...report, convergedMs };
  } finally {
    if (!report) await probes.stop().catch(() => undefined);
  }
}

/** Every pod pinging every other at `pps` over `families` while node `node`'s twilld restarts; the figures half a second after, with the old twilld's exit code. */
export async function restartUnderProbes(tc: TwillCluster, node: number, pps: number, families: readonly (4 | 6)[]): Promise<ProbeReport & { exitCode: number | null }> {
  const probes = await Probes.start(tc, pps, undefined, families);
  let exitCode: number | null;
  try {
    exitCode = await tc.restartAgent(node);
    await new Promise((r) => setTimeout(r, 500));
  } catch (err) {
    await probes.stop().catch(() => undefined);
    throw err;
  }
  return { ...(await probes.stop()), exitCode };
}
