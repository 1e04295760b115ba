/** Small measuring tools for the benchmarks: process RSS/CPU, iperf3, ping RTT. */
import { readFileSync } from 'fs';
import { run, nsArgv } from '../test/harness/netns';

const CLK_TCK = 100;

/** The value after `--name` on the benchmark's command line, or `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

/** Resident set size in MB of a process (0 if it is gone). */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds (user + system) a process has used, with the children it ran
 * and reaped (an `nft` per command, for instance): they run on the node for it.
 */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, then cutime and cstime: the reaped children's.
    return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** CPU seconds of a process and its children (the twill-dataplane program of udp and userspace ipip). */
export function treeCpuSeconds(pid: number): number {
  return [pid, ...childPids(pid)].reduce((sum, p) => sum + cpuSeconds(p), 0);
}

/** Children of a process (the agent's netlink event relay), by scanning /proc. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of require('fs').readdirSync('/proc') as string[]) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

export { iperf, type IperfResult } from '../test/harness/iperf';

/** Average RTT in ms of `count` pings at 10 ms intervals. */
export async function rttMs(fromNs: string, to: string, count = 50): Promise<number> {
  const res = await run(nsArgv(fromNs, ['ping', '-q', '-c', String(count), '-i', '0.01', to]), { timeoutMs: 30_000 });
  const m = /= [\d.]+\/([\d.]+)\//.exec(res.stdout);
  return m ? Number(m[1]) : NaN;
}

export function fmt(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

/** What each benchmarked name runs: a backend type and its settings (datapath and footprint benches). */
export const BENCH_BACKENDS: Readonly<Record<string, { Type: string; Mode?: string }>> = {
  vxlan: { Type: 'vxlan' },
  'host-gw': { Type: 'host-gw' },
  ipip: { Type: 'ipip', Mode: 'kernel' },
  udp: { Type: 'udp' },
  'ipip-userspace': { Type: 'ipip', Mode: 'userspace' },
  wireguard: { Type: 'wireguard' },
  bgp: { Type: 'bgp' },
};
