/**
 * Migration benchmark. 3 nodes; while every pod pings every other pod at
 * 200 packets/s and one iperf3 TCP stream runs from pod 0 to pod 1, the
 * network config switches udp → vxlan → host-gw → ipip (userspace) → vxlan
 * → udp. Per switch: probes sent and lost, the longest gap between replies
 * on any pair, the longest TCP stall (100 ms resolution), and the time from
 * the config write until the last node has converged (every lease on the
 * new backend alone, nothing of the old one left in any kernel). Then
 * the same for new settings of one type: vxlan VNI 1 → 2, Port 8472 → 4789
 * (same VNI), udp Port 8285 → 8300 and back.
 * Usage: node dist/bench/migration.js [--pps 200]
 */
import { TwillCluster, PREFIX } from '../test/harness/twill-cluster';
import { startIperfStream } from '../test/harness/iperf';
import { Probes, convergedOn, convergedOnSettings } from '../test/harness/migration';
import { sleep } from '../test/harness/netns';
import { waitFor } from '../test/harness/wait';
import { arg } from './measure';

const NODES = 3;
const NETWORK = '10.244.0.0/16';
interface Step {
  readonly backend: { Type: string; Mode?: string; VNI?: number; Port?: number };
  /** Set for a change of settings within one type: the settings leases list, and the old backend's device that must go. */
  readonly settings?: { readonly listed?: Record<string, unknown>; readonly oldDevice: string };
}
const CHAIN: Step[] = [
  { backend: { Type: 'udp' } }, { backend: { Type: 'vxlan' } }, { backend: { Type: 'host-gw' } },
  { backend: { Type: 'ipip', Mode: 'userspace' } }, { backend: { Type: 'vxlan' } }, { backend: { Type: 'udp' } },
  { backend: { Type: 'vxlan' } },
  { backend: { Type: 'vxlan', VNI: 2 }, settings: { listed: { VNI: 2 }, oldDevice: 'flannel.1' } },
  { backend: { Type: 'vxlan', VNI: 2, Port: 4789 }, settings: { listed: { VNI: 2, Port: 4789 }, oldDevice: 'flannel.2' } },
  { backend: { Type: 'udp' } },
  { backend: { Type: 'udp', Port: 8300 }, settings: { listed: { Port: 8300 }, oldDevice: 'flannel0' } },
  { backend: { Type: 'udp' }, settings: { oldDevice: 'flannel1' } },
];

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
  const label = ({ backend: { Type, Mode, ...rest } }: Step) => {
    const settings = Object.entries(rest).map(([k, v]) => `${k} ${String(v)}`).join(', ');
    return `${Type}${Mode ? ` (${Mode})` : ''}${settings ? ` ${settings}` : ''}`;
  };
  const tc = await TwillCluster.create({ nodes: NODES, config: { Network: NETWORK, Backend: CHAIN[0].backend }, agentArgs: ['--repair-interval', '2'] });
  const rows: Row[] = [];
  try {
    for (let i = 1; i < CHAIN.length; i++) {
      const from = CHAIN[i - 1];
      const to = CHAIN[i];
      const probes = await Probes.start(tc, pps);
      const tcp = await startIperfStream(tc.podNs(1), tc.podNs(0), tc.podIp(1), 20);
      await sleep(1000);
      const written = Date.now();
      await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: NETWORK, Backend: to.backend }));
      const settings = to.settings;
      await waitFor(`every node on ${label(to)}`, () => settings
        ? convergedOnSettings(tc, NODES, to.backend.Type, settings.listed, settings.oldDevice)
        : convergedOn(tc, NODES, to.backend.Type, from.backend.Type), 60_000, 100);
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
