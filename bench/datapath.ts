/**
 * Datapath benchmark. On the namespaces cluster, for each backend (kernel
 * vxlan and host-gw, userspace udp and ipip): pod-to-pod iperf3 throughput
 * with 1 and 4 streams over bare underlay throughput measured in the same
 * run, RTT, time from twilld start to subnet.env, time from a peer's lease
 * put to its route, agent RSS, and the CPU seconds the agent and its
 * children (the twill-dataplane program of udp and userspace ipip, wireguard-go)
 * used during the run. `<backend>-unguarded` runs it with --tunnel-guard=false,
 * so one run prices the filtering (e.g. --backends vxlan,vxlan-unguarded).
 * Usage: node dist/bench/datapath.js [--seconds 5] [--rounds 3] [--backends vxlan,host-gw,udp,ipip-userspace]
 */
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { run, nsArgv } from '../test/harness/netns';
import { iperf, rttMs, rssMb, treeCpuSeconds, childPids, fmt, BENCH_BACKENDS, arg } from './measure';

interface Row {
  backend: string;
  underlayGbps: number;
  podGbps: number;
  ratio: number;
  underlay4Gbps: number;
  pod4Gbps: number;
  underlayRtt: number;
  podRtt: number;
  startToSubnetEnvMs: number;
  /** udp routes the whole network into flannel0: a new peer needs no route. bgp: a real third node joining. */
  leaseToRouteMs: number | null;
  rssMb: number;
  relayRssMb: number;
  cpuS: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function routePresent(ns: string, dst: string): Promise<boolean> {
  const r = await run(nsArgv(ns, ['ip', '-4', 'route', 'show', dst]));
  return r.stdout.includes(dst.split('/')[0]);
}

/** `<backend>-unguarded`: the same backend with the tunnel guard off, to price the filtering in the same run. */
const UNGUARDED = '-unguarded';

/** A peer lease as a node on `type` publishes it. */
function peerLease(type: string): object {
  if (type === 'vxlan') return { PublicIP: '198.18.0.60', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:01:c6:12:00:3c' } };
  if (type === 'udp') return { PublicIP: '198.18.0.60', PublicIPv6: null };
  if (type === 'wireguard') return { PublicIP: '198.18.0.60', PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: Buffer.alloc(32, 7).toString('base64') } };
  return { PublicIP: '198.18.0.60', PublicIPv6: null, BackendType: type };
}

async function waitUntil(what: string, ok: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  while (!(await ok())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** bgp: node 2's twilld starts; from its lease appearing in etcd to node 0 routing its subnet (BIRD's session, then its route). */
async function joinToRouteMs(tc: TwillCluster): Promise<number> {
  const before = new Set(Object.keys(await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).strings()));
  const starting = tc.startAgent(2);
  let key: string | undefined;
  await waitUntil('node 2\'s lease', async () => {
    key = Object.keys(await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).strings()).find((k) => !before.has(k));
    return key !== undefined;
  });
  const leased = Date.now();
  const subnet = key!.slice(key!.lastIndexOf('/') + 1).replace('-', '/');
  await waitUntil('node 0\'s route to node 2', () => routePresent(tc.nodeNs(0), subnet));
  const ms = Date.now() - leased;
  await starting;
  return ms;
}

async function benchBackend(backend: string, seconds: number, rounds: number): Promise<Row> {
  const unguarded = backend.endsWith(UNGUARDED);
  const config = BENCH_BACKENDS[unguarded ? backend.slice(0, -UNGUARDED.length) : backend];
  if (!config) throw new Error(`--backends: unknown ${JSON.stringify(backend)}; choose from ${Object.keys(BENCH_BACKENDS).join(', ')}, each also as <name>${UNGUARDED}`);
  // bgp: a lease alone makes no route (BIRD's session does), so a real third node joins for that figure.
  const bgp = config.Type === 'bgp';
  const tc = await TwillCluster.create({
    nodes: bgp ? 3 : 2, config: { Network: '10.244.0.0/16', Backend: config }, start: false,
    agentArgs: unguarded ? ['--tunnel-guard=false'] : [],
  });
  try {
    const t0 = Date.now();
    await tc.startAgent(0);
    const startToSubnetEnvMs = Date.now() - t0;
    await tc.startAgent(1);
    await tc.addPod(0);
    await tc.addPod(1);
    if (bgp) await waitUntil('BIRD\'s routes between nodes 0 and 1', async () => (await routePresent(tc.nodeNs(0), tc.lease(1).subnet)) && (await routePresent(tc.nodeNs(1), tc.lease(0).subnet)));
    const agent = tc.agents.get(0)!;
    const cpu0 = treeCpuSeconds(agent.pid);

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
    const underlay4 = await iperf(tc.nodeNs(1), tc.nodeNs(0), tc.net.nodeIp(1), seconds, 4);
    const pod4 = await iperf(tc.podNs(1), tc.podNs(0), tc.podIp(1), seconds, 4);
    const underlayRtt = await rttMs(tc.nodeNs(0), tc.net.nodeIp(1));
    const podRtt = await rttMs(tc.podNs(0), tc.podIp(1));

    const cpuS = treeCpuSeconds(agent.pid) - cpu0;

    // A peer's lease appears: how long until node 0 routes its subnet?
    let leaseToRouteMs: number | null = null;
    if (bgp) {
      leaseToRouteMs = await joinToRouteMs(tc);
    } else if (config.Type !== 'udp') {
      const put = Date.now();
      await tc.admin.put(`${PREFIX}/subnets/10.244.250.0-24`).value(JSON.stringify(peerLease(config.Type)));
      while (!(await routePresent(tc.nodeNs(0), '10.244.250.0/24'))) {
        if (Date.now() - put > 10_000) throw new Error('route never appeared');
      }
      leaseToRouteMs = Date.now() - put;
    }
    const children = childPids(agent.pid).reduce((sum, pid) => sum + rssMb(pid), 0);
    return {
      backend, underlayGbps: underlay.gbps, podGbps: pod.gbps, ratio: pod.gbps / underlay.gbps,
      underlay4Gbps: underlay4.gbps, pod4Gbps: pod4.gbps, underlayRtt, podRtt,
      startToSubnetEnvMs, leaseToRouteMs, rssMb: rssMb(agent.pid), relayRssMb: children, cpuS,
    };
  } finally {
    await tc.destroy();
  }
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '5'));
  const rounds = Number(arg('rounds', '3'));
  const backends = arg('backends', 'vxlan,host-gw,udp,ipip-userspace').split(',');
  const rows: Row[] = [];
  for (const b of backends) rows.push(await benchBackend(b, seconds, rounds));
  console.log(`\nDatapath benchmark: 2 nodes, iperf3 ${seconds} s; 1 stream: median of ${rounds} alternating underlay/pod runs; 4 streams: one run each; one run of the script\n`);
  console.log('| backend | underlay Gbit/s | pod-to-pod Gbit/s | pod/underlay | underlay ×4 Gbit/s | pod ×4 Gbit/s | pod/underlay ×4 | underlay RTT ms | pod RTT ms | start→subnet.env ms | lease put→route ms | agent RSS MB (+children) | agent+children CPU s |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.backend} | ${fmt(r.underlayGbps)} | ${fmt(r.podGbps)} | ${fmt(r.ratio * 100, 0)}% | ${fmt(r.underlay4Gbps)} | ${fmt(r.pod4Gbps)} | ${fmt((r.pod4Gbps / r.underlay4Gbps) * 100, 0)}% | ` +
      `${fmt(r.underlayRtt, 3)} | ${fmt(r.podRtt, 3)} | ${r.startToSubnetEnvMs} | ${r.leaseToRouteMs ?? 'n/a (one network route)'} | ${fmt(r.rssMb, 1)} (+${fmt(r.relayRssMb, 1)}) | ${fmt(r.cpuS)} |`);
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
