/**
 * Dual-stack datapath benchmark (issue 14). For vxlan and host-gw, on one
 * 2-node cluster with a dual-stack underlay and pods with an address of
 * each family: iperf3 pod-to-pod over IPv4 and over IPv6, each beside the
 * bare underlay of the same family in the same run, and the RTT of each.
 * The same backend on an IPv4-only cluster runs first, so the dual-stack
 * IPv4 figure sits beside the IPv4-only one.
 * Usage: node dist/bench/dual-stack.js [--seconds 5] [--rounds 3] [--backends vxlan,host-gw]
 */
import { TwillCluster } from '../test/harness/twill-cluster';
import { iperf, rttMs, fmt, arg } from './measure';

interface Figures {
  underlayGbps: number;
  podGbps: number;
  underlayRtt: number;
  podRtt: number;
}

interface Row {
  backend: string;
  /** IPv4 on an IPv4-only cluster. */
  ipv4Only: Figures;
  ipv4: Figures;
  ipv6: Figures;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Underlay and pod iperf3 runs alternate and the medians are taken: single
 * runs on a shared 2-core machine vary by ±15%.
 */
async function measure(tc: TwillCluster, family: 4 | 6, seconds: number, rounds: number): Promise<Figures> {
  const nodeIp = (n: number) => (family === 6 ? tc.net.nodeIpv6(n) : tc.net.nodeIp(n));
  const podIp = (n: number) => (family === 6 ? tc.podIpv6(n) : tc.podIp(n));
  const underlay: number[] = [];
  const pod: number[] = [];
  for (let r = 0; r < rounds; r++) {
    underlay.push((await iperf(tc.nodeNs(1), tc.nodeNs(0), nodeIp(1), seconds)).gbps);
    pod.push((await iperf(tc.podNs(1), tc.podNs(0), podIp(1), seconds)).gbps);
  }
  return {
    underlayGbps: median(underlay), podGbps: median(pod),
    underlayRtt: await rttMs(tc.nodeNs(0), nodeIp(1)), podRtt: await rttMs(tc.podNs(0), podIp(1)),
  };
}

async function withCluster<T>(backend: string, dualStack: boolean, body: (tc: TwillCluster) => Promise<T>): Promise<T> {
  const config = dualStack
    ? { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: backend } }
    : { Network: '10.244.0.0/16', Backend: { Type: backend } };
  const tc = await TwillCluster.create({ nodes: 2, ipv6: dualStack, config });
  try {
    return await body(tc);
  } finally {
    await tc.destroy();
  }
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  const backends = arg('backends', 'vxlan,host-gw').split(',');
  const rows: Row[] = [];
  for (const backend of backends) {
    if (!['vxlan', 'host-gw'].includes(backend)) throw new Error(`--backends: ${JSON.stringify(backend)} does not carry IPv6; choose vxlan or host-gw`);
    const ipv4Only = await withCluster(backend, false, (tc) => measure(tc, 4, seconds, rounds));
    const [ipv4, ipv6] = await withCluster(backend, true, async (tc) => [await measure(tc, 4, seconds, rounds), await measure(tc, 6, seconds, rounds)]);
    rows.push({ backend, ipv4Only, ipv4, ipv6 });
  }
  console.log(`\nDual-stack benchmark: 2 nodes, iperf3 ${seconds} s, 1 stream, median of ${rounds} alternating underlay/pod runs; RTT: 50 pings at 10 ms; one run of the script\n`);
  console.log('| backend | cluster, family | underlay Gbit/s | pod-to-pod Gbit/s | pod/underlay | underlay RTT ms | pod RTT ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    for (const [label, f] of [['IPv4-only, IPv4', r.ipv4Only], ['dual stack, IPv4', r.ipv4], ['dual stack, IPv6', r.ipv6]] as const) {
      console.log(`| ${r.backend} | ${label} | ${fmt(f.underlayGbps)} | ${fmt(f.podGbps)} | ${fmt((f.podGbps / f.underlayGbps) * 100, 0)}% | ${fmt(f.underlayRtt, 3)} | ${fmt(f.podRtt, 3)} |`);
    }
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
