/**
 * The tunnel guard (issue 15): tunnel packets only from nodes that hold a
 * lease, inner sources only from the sender's subnet. The main cluster: vxlan
 * with a udp Fallback, so every node receives both VXLAN (kernel) and
 * flanneld's udp (the userspace engine, behind the same nft filter). Nodes
 * 0 and 1 run twilld from the start, node 2 joins later, node 3 never runs
 * it: it is the rogue host on the underlay that holds no lease.
 *
 * Crafted packets carry a TCP segment to port 9 of node 0's pod; a capture
 * inside that pod tells what got through. Counters are read from twill's
 * nft table in node 0 and from its /metrics. A small second cluster covers
 * IP protocol 4 (ipip).
 */
import { expect } from 'chai';
import type { Finding } from '../../lib/diagnose/findings';
import { httpBody } from '../harness/checks';
import { runDiagnose } from '../harness/diagnose';
import { startCapture } from '../harness/capture';
import { assertSafeTarget } from '../harness/cluster';
import { ping } from '../harness/ping';
import { sendIpip, sendUdp, tcpPacket, vxlanPayload } from '../harness/packets';
import { PREFIX, TwillCluster } from '../harness/twill-cluster';
import { sleep, waitFor } from '../harness/wait';

const NODES = 4;
const JOINER = 2;
const ROGUE = 3;
const REPAIR_S = 2;
const HEALTH_PORT = 9461;
const VXLAN_PORT = 8472;
const UDP_PORT = 8285;

/** A counter of node 0's guard table. */
async function guardCounter(tc: TwillCluster, name: string): Promise<number> {
  const out = await tc.net.exec(0, ['nft', '-j', 'list', 'counter', 'ip', 'twill_guard', name]);
  const item = (JSON.parse(out.stdout) as { nftables: { counter?: { packets: number } }[] }).nftables.find((i) => i.counter);
  return item!.counter!.packets;
}

/** How many of the crafted segments (TCP to port 9) from `src` reached node 0's pod while `act` ran. */
async function segmentsReachingPod0(tc: TwillCluster, src: string, act: () => Promise<void>): Promise<number> {
  const cap = await startCapture(tc.podNs(0), 'eth0', 'tcp dst port 9');
  await act();
  await sleep(500);
  return (await cap.stop()).filter((f) => f.outer.src === src).length;
}

/** An address inside `node`'s subnet (not its pod's: only the source matters). */
function addressIn(tc: TwillCluster, node: number): string {
  return `${tc.lease(node).subnet.split('/')[0].replace(/\.0$/, '')}.7`;
}

describe('tunnel guard: tunnel packets only from lease holders, inner sources only from their subnets', function () {
  this.timeout(180_000);
  let tc: TwillCluster;

  const metrics = () => httpBody(tc.net.nodeIp(0), HEALTH_PORT, '/metrics');
  const mac = async (node: number, dev: string) => (JSON.parse(await tc.net.ip(node, ['-j', 'link', 'show', dev])) as { address: string }[])[0].address;

  const counter = (name: string) => guardCounter(tc, name);
  const reachingPod0 = (src: string, act: () => Promise<void>) => segmentsReachingPod0(tc, src, act);
  const podIpOf = (node: number) => addressIn(tc, node);
  /** What the udp instance's twill-dataplane dropped, as /metrics has it (read every 5 s). */
  const engineDrops = async () => Number(/^twill_datapath_drops_total\{backend="udp"\} (\d+)/m.exec(await metrics())?.[1] ?? 'NaN');

  /** Sends `inner` from `node` to node 0 over `intake` the way a peer's datapath would. */
  async function send(node: number, intake: 'vxlan' | 'udp', inner: Buffer): Promise<void> {
    const to = tc.net.nodeIp(0);
    assertSafeTarget(to, tc.nodeNs(node));
    const payload = intake === 'udp' ? inner : vxlanPayload(1, await mac(0, 'flannel.1'), '02:00:00:00:00:99', inner);
    await sendUdp(tc.nodeNs(node), to, intake === 'udp' ? UDP_PORT : VXLAN_PORT, payload);
  }

  before(async () => {
    tc = await TwillCluster.create({
      nodes: NODES,
      config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan', Fallback: 'udp' } },
      agentArgs: ['--repair-interval', String(REPAIR_S), '--healthz-port', String(HEALTH_PORT)],
      agentArgsFor: (node) => ['--healthz-ip', tc.net.nodeIp(node)],
      start: false,
    });
    for (const node of [0, 1]) await tc.startAgent(node);
    for (const node of [0, 1]) await tc.addPod(node);
  });
  after(async () => {
    await tc?.destroy();
  });

  it('lets the pods of two lease holders ping each other with the guard installed', async () => {
    expect((await ping(tc.podNs(0), tc.podIp(1), { count: 3, intervalMs: 100 })).received).to.equal(3);
    const table = (await tc.net.exec(0, ['nft', 'list', 'table', 'ip', 'twill_guard'])).stdout;
    expect(table).to.contain(`udp dport ${VXLAN_PORT}`).and.to.contain(`udp dport ${UDP_PORT}`).and.to.contain(tc.net.nodeIp(1));
    expect(tc.logs(0)).to.contain('tunnel guard installed');
  });

  for (const intake of ['vxlan', 'udp'] as const) {
    it(`delivers ${intake} packets from a peer whose inner source is in its subnet`, async () => {
      const src = podIpOf(1);
      const got = await reachingPod0(src, () => send(1, intake, tcpPacket(src, tc.podIp(0), 20)));
      expect(got).to.equal(1);
    });

    it(`drops ${intake} packets from a host that holds no lease, and counts them`, async () => {
      const before = await counter(`unknown_${intake}`);
      const src = podIpOf(1); // a source the peer may use: only the outer source is wrong
      const got = await reachingPod0(src, async () => {
        for (let i = 0; i < 3; i++) await send(ROGUE, intake, tcpPacket(src, tc.podIp(0), 20));
      });
      expect(got, 'segments reaching the pod').to.equal(0);
      expect(await counter(`unknown_${intake}`) - before).to.equal(3);
    });

    it(`drops ${intake} packets from a peer whose inner source is outside its subnet, and counts them`, async () => {
      // udp: nftables filters senders only; twill-dataplane drops and counts the spoofed source itself.
      const count = intake === 'vxlan' ? () => counter('spoofed_vxlan') : engineDrops;
      // The engine's counters reach /metrics 5 s after start, then every 5 s: the first reading waits for them.
      let before = NaN;
      await waitFor(`the ${intake} drop count`, async () => !Number.isNaN(before = await count()), 15_000);
      const src = '10.244.200.9';
      const got = await reachingPod0(src, () => send(1, intake, tcpPacket(src, tc.podIp(0), 20)));
      expect(got).to.equal(0);
      if (intake === 'vxlan') expect(await count() - before).to.equal(1);
      else await waitFor('the udp engine\'s drop on /metrics', async () => (await count()) - before >= 1, 15_000);
    });
  }

  it('logs a peer sending spoofed inner sources by its address, at most once a minute', async () => {
    const line = `from peer ${tc.net.nodeIp(1)} whose inner source lies outside its subnet`;
    await waitFor('the spoof warning', () => tc.logs(0).includes(line), (REPAIR_S + 3) * 1000);
    await send(1, 'vxlan', tcpPacket('10.244.201.9', tc.podIp(0), 20));
    await sleep((REPAIR_S + 1) * 1000);
    expect(tc.logs(0).split(line).length - 1, 'warnings').to.equal(1);
  });

  it('reports the drops on /metrics by reason and intake', async () => {
    await sleep(REPAIR_S * 1000);
    const body = await metrics();
    expect(body).to.match(/^twill_underlay_drops_total\{reason="unknown_source",intake="vxlan",family="ipv4"\} [3-9]/m);
    expect(body).to.match(/^twill_underlay_drops_total\{reason="spoofed_source",intake="vxlan",family="ipv4"\} [1-9]/m);
    expect(body, 'udp\'s spoofed sources are the engine\'s to count').to.not.match(/reason="spoofed_source",intake="udp"/);
    expect(body).to.match(/^twill_tunnel_guard_active 1/m);
  });

  it('twill diagnose reports the guard active, what it dropped, and the peer that sent spoofed sources', async () => {
    const r = await runDiagnose(tc, 0, ['--json']);
    const guard = (JSON.parse(r.stdout) as { findings: Finding[] }).findings.filter((f) => f.topic === 'guard');
    const active = guard.find((f) => f.level === 'OK');
    expect(active?.what, JSON.stringify(guard)).to.match(/^tunnel guard active: udp udp\/8285, vxlan udp\/8472 take packets only from 1 peer\(s\)/);
    expect(active!.what, active!.what).to.match(/dropped so far: 6 \(udp 3, vxlan 3\) from hosts without a lease, 2 \(vxlan 2\) with a spoofed inner source$/);
    expect(guard.filter((f) => f.level === 'WARN').map((f) => f.what).join('\n')).to.contain(`peer ${tc.net.nodeIp(1)} (${tc.lease(1).subnet}) sent`);
    expect(guard.filter((f) => f.level === 'FAIL')).to.deep.equal([]);
  });

  it('puts its table back within a repair interval when someone deletes it', async () => {
    await tc.net.exec(0, ['nft', 'delete', 'table', 'ip', 'twill_guard']);
    await waitFor('the guard table to come back', async () => (await tc.net.exec(0, ['nft', 'list', 'table', 'ip', 'twill_guard']).then(() => true, () => false)), (REPAIR_S + 2) * 1000);
    const src = podIpOf(1);
    const got = await reachingPod0(src, () => send(ROGUE, 'vxlan', tcpPacket(src, tc.podIp(0), 20)));
    expect(got).to.equal(0);
  });

  it('accepts a node that joins at once: its first packets are not dropped', async () => {
    const before = await counter('unknown_vxlan');
    await tc.startAgent(JOINER);
    await tc.addPod(JOINER);
    const subnet = tc.lease(JOINER).subnet;
    await waitFor('node 0 to route to the new node', async () => (await tc.net.ip(0, ['route', 'show', subnet])).includes('flannel.1'), 10_000);
    await waitFor('the new node to route to node 0', async () => (await tc.net.ip(JOINER, ['route', 'show', tc.lease(0).subnet])).includes('flannel.1'), 10_000);
    expect((await ping(tc.podNs(JOINER), tc.podIp(0), { count: 3, intervalMs: 100 })).received).to.equal(3);
    expect(await counter('unknown_vxlan')).to.equal(before);
  });

  it('refuses a node whose lease is gone within one repair interval', async () => {
    await tc.stopAgent(1); // SIGTERM leaves its datapath; its lease stays until deleted
    await tc.admin.delete().key(`${PREFIX}/subnets/${tc.lease(1).subnet.replace('/', '-')}`);
    await sleep(REPAIR_S * 1000);
    const before = await counter('unknown_vxlan');
    const src = podIpOf(1);
    const got = await reachingPod0(src, () => send(1, 'vxlan', tcpPacket(src, tc.podIp(0), 20)));
    expect(got).to.equal(0);
    expect(await counter('unknown_vxlan') - before).to.equal(1);
  });
});

/**
 * IP protocol 4: kernel ipip cannot run here (no ipip module), but the same
 * nft rule filters what reaches the userspace engine's raw socket, which
 * also sits behind the input hook. Nodes 0 and 1 run twilld, node 2 is the
 * rogue.
 */
describe('tunnel guard on IP protocol 4 (ipip, here in userspace mode)', function () {
  this.timeout(120_000);
  let tc: TwillCluster;
  const IPIP_ROGUE = 2;
  const send = (node: number, inner: Buffer) => {
    assertSafeTarget(tc.net.nodeIp(0), tc.nodeNs(node));
    return sendIpip(tc.nodeNs(node), tc.net.nodeIp(0), inner);
  };

  before(async () => {
    tc = await TwillCluster.create({ nodes: 3, config: { Network: '10.244.0.0/16', Backend: { Type: 'ipip' } }, start: false });
    for (const node of [0, 1]) await tc.startAgent(node);
    for (const node of [0, 1]) await tc.addPod(node);
  });
  after(async () => {
    await tc?.destroy();
  });

  it('delivers IP-in-IP from a peer, and drops and counts it from a host without a lease and with a spoofed inner source', async () => {
    const src = addressIn(tc, 1);
    expect(await segmentsReachingPod0(tc, src, () => send(1, tcpPacket(src, tc.podIp(0), 20))), 'from the peer').to.equal(1);
    const [unknown, spoofed] = [await guardCounter(tc, 'unknown_ipip'), await guardCounter(tc, 'spoofed_ipip')];
    expect(await segmentsReachingPod0(tc, src, () => send(IPIP_ROGUE, tcpPacket(src, tc.podIp(0), 20))), 'from the rogue').to.equal(0);
    expect(await segmentsReachingPod0(tc, '10.244.200.9', () => send(1, tcpPacket('10.244.200.9', tc.podIp(0), 20))), 'spoofed').to.equal(0);
    expect(await guardCounter(tc, 'unknown_ipip') - unknown).to.equal(1);
    expect(await guardCounter(tc, 'spoofed_ipip') - spoofed).to.equal(1);
  });
});
