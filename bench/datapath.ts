/**
 * Datapath benchmark (issue: kernel datapath). On the namespaces cluster,
 * for each kernel backend: pod-to-pod iperf3 throughput over bare underlay
 * throughput measured in the same run, RTT, time from twilld start to
 * subnet.env, time from a peer's lease put to its route, agent RSS and CPU.
 * Usage: node dist/bench/datapath.js [--seconds 5] [--rounds 3] [--backends vxlan,host-gw]
 */
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { run, nsArgv } from '../test/harness/netns';
import { iperf, rttMs, rssMb, cpuSeconds, childPids, fmt } from './measure';

interface Row {
  backend: string;
  underlayGbps: number;
  podGbps: number;
  ratio: number;
  underlayRtt: number;
  podRtt: number;
  startToSubnetEnvMs: number;
  leaseToRouteMs: number;
  rssMb: number;
  relayRssMb: number;
  cpuS: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function routePresent(ns: string, dst: string): Promise<boolean> {
  const r = await run(nsArgv(ns, ['ip', '-4', 'route', 'show', dst]));
  return r.stdout.includes(dst.split('/')[0]);
}

async function benchBackend(backend: string, seconds: number, rounds: number): Promise<Row> {
  const tc = await TwillCluster.create({ nodes: 2, config: { Network: '10.244.0.0/16', Backend: { Type: backend } }, start: false });
  try {
    const t0 = Date.now();
    await tc.startAgent(0);
    const startToSubnetEnvMs = Date.now() - t0;
    await tc.startAgent(1);
    await tc.addPod(0);
    await tc.addPod(1);
    const agent = tc.agents.get(0)!;
    const cpu0 = cpuSeconds(agent.pid);

    // Alternate underlay and pod runs and take medians: single runs on a
    // shared 2-core machine vary by ±15%.
    const underlayRuns: number[] = [];
    const podRuns: number[] = [];
    for (let r = 0; r < rounds; r++) {
      underlayRuns.push((await iperf(tc.nodeNs(1), tc.nodeNs(0), tc.net.nodeIp(1), seconds)).gbps);
      podRuns.push((await iperf(tc.podNs(1), tc.podNs(0), tc.podIp(1), seconds)).gbps);
    }
    const underlay = { gbps: median(underlayRuns) };
    const pod = { gbps: median(podRuns) };
    const underlayRtt = await rttMs(tc.nodeNs(0), tc.net.nodeIp(1));
    const podRtt = await rttMs(tc.podNs(0), tc.podIp(1));

    // A peer's lease appears: how long until node 0 routes its subnet?
    const value = backend === 'vxlan'
      ? { PublicIP: '198.18.0.60', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:01:c6:12:00:3c' } }
      : { PublicIP: '198.18.0.60', PublicIPv6: null, BackendType: backend };
    const put = Date.now();
    await tc.admin.put(`${PREFIX}/subnets/10.244.250.0-24`).value(JSON.stringify(value));
    while (!(await routePresent(tc.nodeNs(0), '10.244.250.0/24'))) {
      if (Date.now() - put > 10_000) throw new Error('route never appeared');
    }
    const leaseToRouteMs = Date.now() - put;
    const relay = childPids(agent.pid).reduce((sum, pid) => sum + rssMb(pid), 0);
    return {
      backend, underlayGbps: underlay.gbps, podGbps: pod.gbps, ratio: pod.gbps / underlay.gbps, underlayRtt, podRtt,
      startToSubnetEnvMs, leaseToRouteMs, rssMb: rssMb(agent.pid), relayRssMb: relay, cpuS: cpuSeconds(agent.pid) - cpu0,
    };
  } finally {
    await tc.destroy();
  }
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  const backends = arg('backends', 'vxlan,host-gw').split(',');
  const rows: Row[] = [];
  for (const b of backends) rows.push(await benchBackend(b, seconds, rounds));
  console.log(`\nDatapath benchmark: 2 nodes, iperf3 ${seconds} s single stream, median of ${rounds} alternating underlay/pod runs, one run of the script\n`);
  console.log('| backend | underlay Gbit/s | pod-to-pod Gbit/s | pod/underlay | underlay RTT ms | pod RTT ms | start→subnet.env ms | lease put→route ms | agent RSS MB (+relay) | agent CPU s |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.backend} | ${fmt(r.underlayGbps)} | ${fmt(r.podGbps)} | ${fmt(r.ratio * 100, 0)}% | ${fmt(r.underlayRtt, 3)} | ${fmt(r.podRtt, 3)} | ${r.startToSubnetEnvMs} | ${r.leaseToRouteMs} | ${fmt(r.rssMb, 1)} (+${fmt(r.relayRssMb, 1)}) | ${fmt(r.cpuS)} |`);
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
