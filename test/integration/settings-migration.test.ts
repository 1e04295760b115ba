/**
 * Live migration between two settings of one backend type, on 3 nodes
 * running twilld while every pod pings every other pod at 200 packets/s:
 * vxlan VNI 1 → 2 (a second vxlan device beside the first), then Port
 * 8472 → 4789 with the same VNI (the new device takes another name), udp
 * Port 8285 → 8300 → 8285 (a second TUN); settings the running backend
 * takes in place (vxlan Learning, ipip Mode and DirectRouting); and what
 * is refused: GBP alone, an ipip Mode that cannot take over live. Also a
 * node whose agent is down during a VNI migration.
 */
import { expect } from 'chai';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { startIperfStream } from '../harness/iperf';
import { Probes, type LeaseJson, type ProbeReport, convergedOnSettings, devices, leases } from '../harness/migration';
import { sleep } from '../harness/netns';
import { waitFor } from '../harness/wait';

const NODES = 3;
const NETWORK = '10.244.0.0/16';
const PPS = 200;

async function putConfig(tc: TwillCluster, backend: object): Promise<void> {
  await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: NETWORK, Backend: backend }));
}

async function leaseValues(tc: TwillCluster): Promise<LeaseJson[]> {
  return [...(await leases(tc)).values()];
}

async function ifindexOf(tc: TwillCluster, node: number, dev: string): Promise<number> {
  const m = /^(\d+):/.exec(await tc.net.ip(node, ['-o', 'link', 'show', 'dev', dev]));
  if (!m) throw new Error(`node ${node} has no ${dev}`);
  return Number(m[1]);
}

/** Routes of one protocol on a node, one per line. */
async function routes(tc: TwillCluster, node: number, proto: number): Promise<string[]> {
  return (await tc.net.ip(node, ['route', 'show', 'proto', String(proto)])).split('\n').map((l) => l.trim()).filter(Boolean);
}

/** UDP ports twilld's userspace datapath listens on (the kernel's vxlan sockets included). */
async function udpListening(tc: TwillCluster, node: number, port: number): Promise<boolean> {
  return (await tc.net.exec(node, ['ss', '-Hlun', `sport = :${port}`])).stdout.trim() !== '';
}

/** Runs `change` while probes run; returns the report after `settled` holds on every node. */
async function underProbes(tc: TwillCluster, what: string, change: () => Promise<void>, settled: () => Promise<boolean>): Promise<ProbeReport> {
  const probes = await Probes.start(tc, PPS);
  let report: ProbeReport | undefined;
  try {
    const started = Date.now();
    await change();
    await waitFor(what, settled, 60_000, 250).catch((err: Error) => {
      const logs = [0, 1, 2].map((i) => `--- node ${i} ---\n${tc.logs(i).split('\n').slice(-25).join('\n')}`).join('\n');
      throw new Error(`${err.message}\n${logs}`);
    });
    const ms = Date.now() - started;
    await sleep(1000);
    report = await probes.stop();
    console.log(`      ${what}: ${report.sent} probes, ${report.lost} lost, longest reply gap ${Math.round(report.maxGapMs)} ms, settled in ${ms} ms`);
    return report;
  } finally {
    if (!report) await probes.stop().catch(() => undefined);
  }
}

const settledOn = (tc: TwillCluster, type: string, settings: Record<string, unknown> | undefined, oldDevice: string) =>
  () => convergedOnSettings(tc, NODES, type, settings, oldDevice);

describe('live migration between settings of one backend type: 3 nodes, pods pinging at 200 pps', function () {
  this.timeout(900_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({ nodes: NODES, config: { Network: NETWORK, Backend: { Type: 'vxlan' } }, agentArgs: ['--repair-interval', '2'] });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('vxlan VNI 1 → 2: a second vxlan device beside the first, 0 lost, a TCP stream never stalls over 200 ms, then only flannel.2 is left', async () => {
    const tcp = await startIperfStream(tc.podNs(1), tc.podNs(0), tc.podIp(1), 20);
    await sleep(1000);
    const report = await underProbes(tc, 'vxlan VNI 1 -> 2', () => putConfig(tc, { Type: 'vxlan', VNI: 2 }), settledOn(tc, 'vxlan', { VNI: 2 }, 'flannel.1'));
    const stream = await tcp.done;
    console.log(`      TCP ${stream.gbps.toFixed(2)} Gbit/s, longest stall ${stream.maxStallMs} ms`);
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(stream.maxStallMs, 'longest TCP stall').to.be.at.most(200);
    for (const l of await leaseValues(tc)) {
      expect(l.BackendType).to.equal('vxlan');
      expect(l.BackendData?.VNI, 'flanneld peers read the VNI from BackendData').to.equal(2);
    }
    for (let i = 0; i < NODES; i++) {
      expect(await devices(tc, i)).to.include('flannel.2');
      const link = await tc.net.ip(i, ['-d', 'link', 'show', 'dev', 'flannel.2']);
      expect(link).to.match(/vxlan id 2 /);
      const fdb = (await tc.net.exec(i, ['bridge', 'fdb', 'show', 'dev', 'flannel.2'])).stdout.match(/dst 198\.18\.0\.\d+/g) ?? [];
      expect(fdb, `node ${i}: FDB of flannel.2`).to.have.length(NODES - 1);
      // The second vxlan backend owns its routes by protocol 121; nothing of the first (117) is left.
      expect(await routes(tc, i, 117), `node ${i}: routes of the first vxlan backend`).to.deep.equal([]);
      const mine = await routes(tc, i, 121);
      expect(mine, `node ${i}: routes of the VNI 2 backend`).to.have.length(NODES - 1);
      for (const r of mine) expect(r).to.match(/dev flannel\.2 onlink/);
    }
  });

  it('vxlan Port 8472 → 4789 with the same VNI: the new device is vx4789.2, 0 lost, then flannel.2 is gone', async () => {
    const report = await underProbes(tc, 'vxlan Port 8472 -> 4789', () => putConfig(tc, { Type: 'vxlan', VNI: 2, Port: 4789 }), settledOn(tc, 'vxlan', { Port: 4789, VNI: 2 }, 'flannel.2'));
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) {
      const link = await tc.net.ip(i, ['-d', 'link', 'show', 'dev', 'vx4789.2']);
      expect(link).to.match(/vxlan id 2 /).and.to.match(/dstport 4789/);
      expect(await routes(tc, i, 121), `node ${i}: routes of the VNI 2 port 8472 backend`).to.deep.equal([]);
      for (const r of await routes(tc, i, 117)) expect(r).to.match(/dev vx4789\.2 onlink/);
      expect(await routes(tc, i, 117)).to.have.length(NODES - 1);
    }
  });

  it('a restarted agent adopts vx4789.2 as it is (same ifindex, no flannel.2 created), 0 lost', async () => {
    const before = await ifindexOf(tc, 1, 'vx4789.2');
    const report = await underProbes(tc, 'restart of node 1 on vx4789.2', async () => {
      expect(await tc.stopAgent(1, 'SIGTERM')).to.equal(0);
      await tc.startAgent(1);
    }, async () => tc.logs(1).includes('twilld running'));
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(await ifindexOf(tc, 1, 'vx4789.2')).to.equal(before);
    expect(await devices(tc, 1)).to.not.include('flannel.2');
  });

  it('vxlan Learning on: changed on the device in place (same ifindex), 0 lost', async () => {
    const before = await Promise.all([0, 1, 2].map((i) => ifindexOf(tc, i, 'vx4789.2')));
    const report = await underProbes(tc, 'vxlan Learning -> true', () => putConfig(tc, { Type: 'vxlan', VNI: 2, Port: 4789, Learning: true }), async () => {
      for (let i = 0; i < NODES; i++) if ((await tc.net.ip(i, ['-d', 'link', 'show', 'dev', 'vx4789.2'])).includes('nolearning')) return false;
      return true;
    });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(await Promise.all([0, 1, 2].map((i) => ifindexOf(tc, i, 'vx4789.2')))).to.deep.equal(before);
    expect(tc.logs(0)).to.contain('vx4789.2: learning turned on in place');
  });

  it('refuses GBP changed alone (one socket per port and GBP setting) and keeps everything as it was', async () => {
    const before = JSON.stringify(await leaseValues(tc));
    await putConfig(tc, { Type: 'vxlan', VNI: 2, Port: 4789, Learning: true, GBP: true });
    await waitFor('each agent to refuse GBP alone', async () => [0, 1, 2].every((i) => tc.logs(i).includes('cannot run with GBP off and on at once')), 5000);
    expect(tc.logs(0)).to.contain('change Backend.Port or Backend.VNI together with Backend.GBP');
    expect(tc.logs(0)).to.contain('keeping the running config');
    await sleep(1000);
    expect(JSON.stringify(await leaseValues(tc))).to.equal(before);
    await putConfig(tc, { Type: 'vxlan', VNI: 2, Port: 4789, Learning: true });
  });

  it('udp Port 8285 → 8300: a second TUN flannel1 beside flannel0, 0 lost; 8300 → 8285: back on flannel0, 0 lost', async () => {
    let report = await underProbes(tc, 'vxlan -> udp', () => putConfig(tc, { Type: 'udp' }), settledOn(tc, 'udp', undefined, 'vx4789.2'));
    expect(report.lost, report.lines.join('\n')).to.equal(0);

    report = await underProbes(tc, 'udp Port 8285 -> 8300', () => putConfig(tc, { Type: 'udp', Port: 8300 }), settledOn(tc, 'udp', { Port: 8300 }, 'flannel0'));
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) {
      expect(await udpListening(tc, i, 8300), `node ${i} listens on 8300`).to.equal(true);
      expect(await udpListening(tc, i, 8285), `node ${i} still listens on 8285`).to.equal(false);
      // Alone again, the second udp backend holds the network route, as flanneld's udp does.
      expect(await routes(tc, i, 124), `node ${i}: routes of the port 8300 backend`).to.deep.equal([`${NETWORK} dev flannel1 scope link`]);
      expect(await routes(tc, i, 120), `node ${i}: routes of the port 8285 backend`).to.deep.equal([]);
      expect(await tc.net.ip(i, ['-d', 'link', 'show', 'dev', 'flannel1'])).to.contain('alias twill udp Port=8300');
    }

    report = await underProbes(tc, 'udp Port 8300 -> 8285', () => putConfig(tc, { Type: 'udp' }), settledOn(tc, 'udp', undefined, 'flannel1'));
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) {
      expect(await routes(tc, i, 120)).to.deep.equal([`${NETWORK} dev flannel0 scope link`]);
      expect(await udpListening(tc, i, 8300), `node ${i} still listens on 8300`).to.equal(false);
    }
  });

  it('ipip Mode auto and DirectRouting apply in place (same TUN); Mode kernel is refused with the reason, 0 lost', async () => {
    let report = await underProbes(tc, 'udp -> ipip (userspace)', () => putConfig(tc, { Type: 'ipip', Mode: 'userspace' }), settledOn(tc, 'ipip', undefined, 'flannel0'));
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    const before = await Promise.all([0, 1, 2].map((i) => ifindexOf(tc, i, 'flannel.ipip')));

    await putConfig(tc, { Type: 'ipip', Mode: 'kernel' });
    await waitFor('each agent to refuse Mode kernel', async () => [0, 1, 2].every((i) => tc.logs(i).includes('the ipip backend runs in userspace mode on this node, and Backend.Mode')), 5000);

    report = await underProbes(tc, 'ipip Mode auto, DirectRouting true', () => putConfig(tc, { Type: 'ipip', Mode: 'auto', DirectRouting: true }), async () => {
      for (let i = 0; i < NODES; i++) {
        const rs = await routes(tc, i, 119);
        if (rs.length !== NODES - 1 || !rs.every((r) => r.includes('dev eth0'))) return false;
      }
      return true;
    });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(await Promise.all([0, 1, 2].map((i) => ifindexOf(tc, i, 'flannel.ipip')))).to.deep.equal(before);
    expect(tc.logs(0)).to.contain('ipip backend: settings changed in place');
  });

  it('a node whose agent is down during a VNI migration keeps its device; the others keep the old VNI for it; the migration finishes after it returns', async () => {
    const ready = await underProbes(tc, 'ipip -> vxlan', () => putConfig(tc, { Type: 'vxlan' }), settledOn(tc, 'vxlan', undefined, 'flannel.ipip'));
    expect(ready.lost, ready.lines.join('\n')).to.equal(0);
    expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
    const probes = await Probes.start(tc, PPS);
    let report: ProbeReport | undefined;
    try {
      await putConfig(tc, { Type: 'vxlan', VNI: 3 });
      await waitFor('nodes 0 and 1 to terminate VNI 1 and VNI 3', async () => {
        const ls = (await leaseValues(tc)).filter((l) => l.PublicIP !== '198.18.0.3');
        return ls.every((l) => JSON.stringify(l.TwillBackends?.map((b) => b.Settings ?? {})) === '[{"VNI":3},{}]');
      }, 10_000);
      await sleep(7000);
      for (const i of [0, 1]) expect(await devices(tc, i), `node ${i} still carries node 2 over VNI 1`).to.include('flannel.1');
      await tc.startAgent(2);
      await waitFor('every node on VNI 3 alone', settledOn(tc, 'vxlan', { VNI: 3 }, 'flannel.1'), 60_000, 250);
      await sleep(1000);
      report = await probes.stop();
    } finally {
      if (!report) await probes.stop().catch(() => undefined);
    }
    console.log(`      agent stopped mid VNI migration: ${report.sent} probes, ${report.lost} lost, longest reply gap ${Math.round(report.maxGapMs)} ms`);
    expect(report.lost, report.lines.join('\n')).to.equal(0);
  });
});
