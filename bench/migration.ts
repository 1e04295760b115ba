/**
 * Migration benchmark. 3 nodes; while every pod pings every other pod at
 * 200 packets/s and one iperf3 TCP stream runs from pod 0 to pod 1, the
 * network config switches udp → vxlan → host-gw → ipip (userspace) → vxlan
 * → udp. Per switch: probes sent and lost, the longest gap between replies
 * on any pair, the longest TCP stall (100 ms resolution), and the time from
 * the config write until the last node has converged (every lease on the
 * new backend alone, nothing of the old one left in any kernel).
 * Usage: node dist/bench/migration.js [--pps 200]
 */
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { startIperfStream } from '../test/harness/iperf';
import { Probes, convergedOn } from '../test/harness/migration';
import { sleep } from '../test/harness/netns';
import { waitFor } from '../test/harness/wait';

const NODES = 3;
const NETWORK = '10.244.0.0/16';
const CHAIN: { Type: string; Mode?: string }[] = [
  { Type: 'udp' }, { Type: 'vxlan' }, { Type: 'host-gw' }, { Type: 'ipip', Mode: 'userspace' }, { Type: 'vxlan' }, { Type: 'udp' },
];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

interface Row {
  from: string;
  to: string;
  sent: number;
  lost: number;
  maxGapMs: number;
  tcpStallMs: number;
  tcpGbps: number;
  convergedMs: number;
}

async function main(): Promise<void> {
  const pps = Number(arg('pps', '200'));
  const label = (b: { Type: string; Mode?: string }) => (b.Mode ? `${b.Type} (${b.Mode})` : b.Type);
  const tc = await TwillCluster.create({ nodes: NODES, config: { Network: NETWORK, Backend: CHAIN[0] }, agentArgs: ['--repair-interval', '2'] });
  const rows: Row[] = [];
  try {
    for (let i = 1; i < CHAIN.length; i++) {
      const from = CHAIN[i - 1];
      const to = CHAIN[i];
      const probes = await Probes.start(tc, pps);
      const tcp = await startIperfStream(tc.podNs(1), tc.podNs(0), tc.podIp(1), 20);
      await sleep(1000);
      const written = Date.now();
      await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: NETWORK, Backend: to }));
      await waitFor(`every node on ${to.Type}`, () => convergedOn(tc, NODES, to.Type, from.Type), 60_000, 100);
      const convergedMs = Date.now() - written;
      await sleep(1000);
      const report = await probes.stop();
      const stream = await tcp.done;
      rows.push({ from: label(from), to: label(to), sent: report.sent, lost: report.lost, maxGapMs: report.maxGapMs, tcpStallMs: stream.maxStallMs, tcpGbps: stream.gbps, convergedMs });
      console.error(`${label(from)} -> ${label(to)}: ${report.lost}/${report.sent} lost, converged in ${convergedMs} ms`);
    }
  } finally {
    await tc.destroy();
  }
  console.log(`\nMigration benchmark: ${NODES} nodes, every pod pinging every other pod at ${pps} pps, one iperf3 TCP stream pod 0 → pod 1; one run of the script\n`);
  console.log('| switch | probes sent | lost | longest reply gap ms | longest TCP stall ms | TCP Gbit/s during the switch | config write → last node converged ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.from} → ${r.to} | ${r.sent} | ${r.lost} | ${Math.round(r.maxGapMs)} | ${r.tcpStallMs} | ${r.tcpGbps.toFixed(2)} | ${r.convergedMs} |`);
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exitCode = 1;
});
