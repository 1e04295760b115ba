/**
 * The bgp backend on 3 nodes of one segment running twilld, each with its
 * BIRD: `{"Type": "bgp"}` alone gives a full mesh, BIRD installs every
 * peer's subnet via the peer's public IP, and pods reach each other as
 * plain IP. BIRD is kept across a twilld restart and comes back in
 * graceful restart after being killed, both without a lost probe; a node
 * that leaves is withdrawn everywhere; with a Fallback, a session that
 * drops moves its peer to the tunnel without a lost probe and back when it
 * returns; and the cluster migrates vxlan → bgp → vxlan at 200 pps.
 */
import { expect } from 'chai';
import { readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import * as path from 'path';
import { allPodsPing, httpBody } from '../harness/checks';
import { runTwill } from '../harness/diagnose';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { ping, startPingStream } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { UNDERLAY } from '../harness/cluster';
import { convergedOn, hasFootprint, migrateUnderProbes } from '../harness/migration';
import { waitFor } from '../harness/wait';
import { birdCommand, birdSessions } from '../../backends/bgp/bird-control';

const NODES = 3;
const NETWORK = '10.244.0.0/16';
const HEALTH_PORT = 9455;
const metrics = (node: number) => httpBody(`198.18.0.${node + 1}`, HEALTH_PORT, '/metrics');


describe('bgp backend (BIRD): 3 nodes on one segment running twilld', function () {
  this.timeout(300_000);
  let tc: TwillCluster;
  const runDirs: string[] = [];
  const socket = (node: number) => path.join(runDirs[node], 'bird.ctl');
  const birdPid = (node: number) => Number(readFileSync(path.join(runDirs[node], 'bird.pid'), 'utf8').trim());
  const putConfig = (backend: object) => tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: NETWORK, Backend: backend }));
  const birdRoutes = async (node: number) => (await tc.net.ip(node, ['route', 'show', 'proto', 'bird'])).split('\n').map((l) => l.trim()).filter(Boolean);
  const routeTo = (node: number, peer: number) => tc.net.ip(node, ['route', 'show', tc.lease(peer).subnet]);
  const messages = (node: number) => tc.logs(node).split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { message: string }).message);
  const established = async (node: number) => (await birdSessions(socket(node))).filter((s) => s.info.startsWith('Established')).length;

  before(async () => {
    tc = await TwillCluster.create({
      nodes: NODES,
      config: { Network: NETWORK, Backend: { Type: 'bgp' } },
      agentArgs: ['--repair-interval', '2', '--log-format', 'json', '--healthz-port', String(HEALTH_PORT)],
      agentArgsFor: (node) => ['--healthz-ip', `198.18.0.${node + 1}`],
      start: false,
    });
    for (let i = 0; i < NODES; i++) runDirs.push(`/run/twill/bird-${statSync(`/run/netns/${tc.nodeNs(i)}`).ino}`);
    for (let i = 0; i < NODES; i++) await tc.startAgent(i);
    for (let i = 0; i < NODES; i++) await tc.addPod(i);
    await waitFor('every BGP session established', async () => {
      for (let i = 0; i < NODES; i++) if ((await established(i)) !== NODES - 1 || (await birdRoutes(i)).length !== NODES - 1) return false;
      return true;
    }, 30_000, 250);
  });
  after(async () => {
    // The cluster kills every process of its namespaces (BIRD included) by PID; the directories are ours.
    await tc?.destroy();
    for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('publishes BackendType bgp with its ASN and gives pods the underlay\'s MTU', async () => {
    for (let i = 0; i < NODES; i++) {
      expect(tc.lease(i).mtu).to.equal(1500);
      const value = JSON.parse((await tc.admin.get(`${PREFIX}/subnets/${tc.lease(i).subnet.replace('/', '-')}`).string())!) as object;
      expect(value).to.deep.equal({ PublicIP: `198.18.0.${i + 1}`, PublicIPv6: null, BackendType: 'bgp', BackendData: { ASN: 64512 } });
    }
  });

  it('lets every pod ping every other pod over routes BIRD installed, next hop the peer\'s public IP', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
    for (let i = 0; i < NODES; i++) {
      const routes = await birdRoutes(i);
      for (let peer = 0; peer < NODES; peer++) {
        if (peer === i) continue;
        expect(routes, `node ${i}: BIRD's route to node ${peer}`).to.include(`${tc.lease(peer).subnet} via 198.18.0.${peer + 1} dev eth0 metric 32`);
      }
      // twill installs no route of its own for the peers (BIRD's are the only ones).
      for (const proto of [117, 118, 119, 120, 125]) expect(await tc.net.ip(i, ['route', 'show', 'proto', String(proto)])).to.equal('');
    }
  });

  it('puts plain IP on the underlay: pod addresses outside, no UDP 8472, no IP-in-IP', async () => {
    const wire = await startCapture(tc.nodeNs(0), 'eth0', `ip and not host ${UNDERLAY.bridgeIp} and not tcp port 179`);
    await ping(tc.podNs(0), tc.podIp(2), { count: 5, intervalMs: 50 });
    await ping(tc.podNs(1), tc.podIp(0), { count: 5, intervalMs: 50 });
    const frames = await wire.stop();
    expect(frames.length, 'frames on node 0\'s eth0').to.be.at.least(20);
    for (const f of frames) {
      expect(f.outer.proto, `${f.outer.src} -> ${f.outer.dst}: IP protocol`).to.equal(1);
      expect([f.outer.src, f.outer.dst].every((a) => a.startsWith('10.244.')), `${f.outer.src} -> ${f.outer.dst}`).to.equal(true);
    }
  });

  it('shows each node\'s BGP sessions in twill status, /metrics and twill diagnose', async () => {
    // /metrics is refreshed every few seconds; twill status reads the sessions from there.
    await waitFor('BGP metrics on every node', async () => {
      for (let i = 0; i < NODES; i++) {
        const m = await metrics(i);
        const up = [...m.matchAll(/^twill_bgp_session_up\{neighbor="198\.18\.0\.\d"\} 1$/gm)].length;
        if (up !== NODES - 1 || !/^twill_bgp_routes_learned 2$/m.test(m)) return false;
      }
      return true;
    }, 15_000, 500);
    const endpoints = tc.etcd.endpointOn(UNDERLAY.bridgeIp);
    const table = await runTwill(['status', '--etcd-endpoints', endpoints, '--health-port', String(HEALTH_PORT)]);
    expect(table, table).to.contain('BGP 198.18.0.2 Established, 198.18.0.3 Established');
    const doc = JSON.parse(await runTwill(['status', '--json', '--etcd-endpoints', endpoints, '--health-port', String(HEALTH_PORT)])) as { leases: { health: { bgp?: { neighbor: string; state: string }[] } | null }[] };
    for (const l of doc.leases) expect(l.health?.bgp?.map((s) => s.state), JSON.stringify(l)).to.deep.equal(['Established', 'Established']);
    const out = await runTwill(['diagnose', '--etcd-endpoints', endpoints, '--iface', 'eth0', '--subnet-file', tc.subnetFile(0)], tc.nodeNs(0));
    expect(out).to.match(/^OK device: BIRD answers on \/run\/twill\/bird-\d+\/bird\.ctl: 2 of 2 BGP session\(s\) established/m);
    for (const peer of [1, 2]) expect(out).to.match(new RegExp(`^OK peer: ${tc.lease(peer).subnet.replace(/\./g, '\\.')} \\(198\\.18\\.0\\.${peer + 1}\\), bgp: BIRD's route via 198\\.18\\.0\\.${peer + 1} is in the kernel`, 'm'));
    expect(out.split('\n').filter((l) => l.startsWith('FAIL')), out).to.deep.equal([]);
  });

  it('keeps the same BIRD and loses no probe at 100 pps across a twilld restart', async () => {
    const before = birdPid(1);
    const stream = await startPingStream(tc.podNs(0), tc.podIp(1), 100);
    await stream.waitForReplies(50, 5000);
    expect(await tc.restartAgent(1)).to.equal(0);
    await stream.waitForReplies(stream.received + 100, 10_000);
    const report = await stream.stop();
    console.log(`      twilld restart: longest gap ${Math.round(report.maxGapMs)} ms, ${report.lost} of ${report.sent} probes lost`);
    expect(report.lost, 'probes lost').to.equal(0);
    expect(birdPid(1), 'the same BIRD, adopted').to.equal(before);
  });

  it('starts a new BIRD in graceful restart when BIRD is killed, losing no probe at 100 pps', async () => {
    const before = birdPid(2);
    const stream = await startPingStream(tc.podNs(0), tc.podIp(2), 100);
    await stream.waitForReplies(50, 5000);
    process.kill(before, 'SIGKILL');
    await waitFor('a new BIRD on node 2 with both sessions up', async () => {
      try {
        return birdPid(2) !== before && (await established(2)) === NODES - 1;
      } catch {
        return false;
      }
    }, 30_000, 250);
    await stream.waitForReplies(stream.received + 100, 10_000);
    const report = await stream.stop();
    console.log(`      BIRD killed and restarted: longest gap ${Math.round(report.maxGapMs)} ms, ${report.lost} of ${report.sent} probes lost`);
    expect(report.lost, 'probes lost').to.equal(0);
    expect(await birdRoutes(2)).to.have.length(NODES - 1);
  });

  it('withdraws a node that leaves from every other node, and learns it again when it returns', async () => {
    expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
    await tc.admin.delete().key(`${PREFIX}/subnets/${tc.lease(2).subnet.replace('/', '-')}`);
    await waitFor('node 2\'s route gone from nodes 0 and 1', async () => (await routeTo(0, 2)) === '' && (await routeTo(1, 2)) === '', 20_000, 250);
    expect(await established(0)).to.equal(1);
    await tc.startAgent(2);
    await waitFor('node 2 learned again', async () => (await routeTo(0, 2)).includes('proto bird') && (await routeTo(1, 2)).includes('proto bird'), 30_000, 250);
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  it('ignores a node that announces a piece of another node\'s subnet (a mesh peer may announce its own subnet only)', async () => {
    // Node 2's BIRD, told by hand (its twilld stopped) to announce the first half of node 1's /24: more
    // specific, so it would win in every kernel if it were taken.
    expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
    const [base, len] = tc.lease(1).subnet.split('/');
    expect(len).to.equal('24');
    const stolen = `${base}/25`;
    const conf = readFileSync(path.join(runDirs[2], 'bird.conf'), 'utf8');
    const own2 = `route ${tc.lease(2).subnet} blackhole;`;
    expect(conf).to.contain(own2);
    const rogue = path.join(runDirs[2], 'rogue.conf');
    writeFileSync(rogue, conf.replace(own2, `${own2}\n  route ${stolen} blackhole;`));
    try {
      await birdCommand(socket(2), `configure "${rogue}"`);
      await waitFor('node 2 announcing the stolen /25', async () => (await birdCommand(socket(2), `show route ${stolen}`)).lines.some((l) => l.text.includes(stolen)), 10_000, 200);
      await new Promise((r) => setTimeout(r, 1500));
      for (const node of [0, 1]) expect(await tc.net.ip(node, ['route', 'show', stolen]), `node ${node}`).to.equal('');
      expect(await routeTo(0, 1)).to.contain('via 198.18.0.2');
    } finally {
      await birdCommand(socket(2), `configure "${path.join(runDirs[2], 'bird.conf')}"`).catch(() => undefined);
      rmSync(rogue, { force: true });
      await tc.startAgent(2);
    }
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  it('with a Fallback, holds standby vxlan routes under BIRD\'s; a session that drops cleanly moves its peer to vxlan with 0 lost probes at 100 pps, and back when it returns', async () => {
    await putConfig({ Type: 'bgp', Fallback: 'vxlan' });
    const standby = async (node: number, peer: number) => (await routeTo(node, peer)).includes('proto 117 onlink metric 1024') || /proto 117 .*metric 1024/.test(await routeTo(node, peer));
    await waitFor('standby vxlan routes (metric 1024) on every node', async () => {
      for (let i = 0; i < NODES; i++) for (let p = 0; p < NODES; p++) if (p !== i && !(await standby(i, p))) return false;
      return true;
    }, 30_000, 250);
    const to2 = await startPingStream(tc.podNs(0), tc.podIp(2), 100);
    const from2 = await startPingStream(tc.podNs(2), tc.podIp(0), 100);
    await to2.waitForReplies(50, 5000);
    // BIRD's own command: a Cease to node 2, which withdraws node 2's route here and this node's there.
    await birdCommand(socket(0), 'disable mesh_198_18_0_3');
    await waitFor('node 0 → node 2 and back carried by vxlan (metric 0)', async () => {
      const there = await routeTo(0, 2);
      const back = await routeTo(2, 0);
      return !there.includes('proto bird') && /proto 117 onlink\s*$/m.test(there) && !back.includes('proto bird') && /proto 117 onlink\s*$/m.test(back);
    }, 15_000, 100);
    await birdCommand(socket(0), 'enable mesh_198_18_0_3');
    await waitFor('node 0 → node 2 on BIRD\'s route again, vxlan standing by', async () => (await routeTo(0, 2)).includes('proto bird') && (await standby(0, 2)) && !/proto 117 onlink\s*$/m.test(await routeTo(0, 2)), 30_000, 100);
    await to2.waitForReplies(to2.received + 50, 5000);
    const [a, b] = [await to2.stop(), await from2.stop()];
    console.log(`      session 0-2 down and up: ${a.lost} of ${a.sent} and ${b.lost} of ${b.sent} probes lost, longest gaps ${Math.round(a.maxGapMs)} / ${Math.round(b.maxGapMs)} ms`);
    expect(a.lost + b.lost, 'probes lost').to.equal(0);
  });

  it('refuses a bad ASN, naming Backend.ASN, and keeps BGP running as it was', async () => {
    const before = birdPid(0);
    await putConfig({ Type: 'bgp', ASN: 'x' });
    const refusal = () => messages(0).find((m) => m.includes('Backend.ASN: "x" is not an AS number'));
    await waitFor('the config refused', () => refusal() !== undefined, 10_000);
    expect(refusal()).to.contain('keeping the running config');
    expect(birdPid(0)).to.equal(before);
    expect(await established(0)).to.equal(NODES - 1);
  });

  /** Every pod pinging every pod at 200 pps while the config moves from `from` to `to`: 0 lost, nothing of `from` left. */
  async function migrates(from: string, to: string): Promise<void> {
    const report = await migrateUnderProbes(tc, from, to, async () => { await putConfig({ Type: to }); });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) expect(await hasFootprint(tc, i, from), `node ${i}: what ${from} left`).to.deep.equal([]);
    if (to === 'bgp') for (let i = 0; i < NODES; i++) expect(await birdRoutes(i), `node ${i}: BIRD's routes`).to.have.length(NODES - 1);
  }

  for (const [from, to] of [['bgp', 'vxlan'], ['vxlan', 'bgp'], ['bgp', 'vxlan']]) {
    it(`migrates ${from} → ${to} with 0 lost probes at 200 pps and nothing of ${from} left`, () => migrates(from, to));
  }

  it('a node without BIRD refuses bgp, naming bird2, keeps vxlan and still reaches every pod; it joins once BIRD is there', async () => {
    expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
    await tc.startAgent(2, [], { env: { TWILL_BIRD: '/nonexistent/bird' } });
    await putConfig({ Type: 'bgp' });
    const refusal = () => messages(2).find((m) => m.includes('cannot switch to the bgp backend'));
    await waitFor('node 2 to refuse bgp', () => refusal() !== undefined, 15_000);
    expect(refusal()).to.contain('bird (BIRD 2) is not at /nonexistent/bird').and.contain('apt-get install bird2').and.contain('keeping the running config');
    await waitFor('nodes 0 and 1 on BIRD\'s routes to each other', async () => (await routeTo(0, 1)).includes('proto bird') && (await routeTo(1, 0)).includes('proto bird'), 30_000, 250);
    expect(await routeTo(0, 2), 'node 0 to node 2: still vxlan').to.match(/dev flannel\.1 proto 117 onlink/);
    expect(await allPodsPing(tc)).to.deep.equal([]);
    expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
    await tc.startAgent(2);
    await waitFor('every node on bgp with nothing of vxlan left', () => convergedOn(tc, NODES, 'bgp', 'vxlan'), 60_000, 250);
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  for (const [from, to] of [['bgp', 'host-gw'], ['host-gw', 'bgp']]) {
    it(`migrates ${from} → ${to} with 0 lost probes at 200 pps and nothing of ${from} left`, () => migrates(from, to));
  }

  it('a twilld restarted in the middle of a migration away from bgp adopts its BIRD with the ASN it runs: no session resets, and the migration finishes', async () => {
    await putConfig({ Type: 'bgp', ASN: 65010 });
    await waitFor('every session up in AS 65010', async () => {
      for (let i = 0; i < NODES; i++) {
        const sessions = await birdSessions(socket(i));
        if (sessions.length !== NODES - 1 || !sessions.every((s) => s.info.startsWith('Established') && s.neighborAs === 65010)) return false;
      }
      return true;
    }, 30_000, 250);
    const since = async () => (await birdSessions(socket(1))).map((s) => `${s.name} ${s.since}`).sort();
    expect(await tc.stopAgent(1, 'SIGTERM')).to.equal(0);
    const before = await since();
    await putConfig({ Type: 'vxlan' });
    await new Promise((r) => setTimeout(r, 1500));
    await tc.startAgent(1);
    await waitFor('node 1 running vxlan beside the BIRD it adopted', () => messages(1).some((m) => m.startsWith('adopted the bgp backend')), 15_000, 100);
    expect(await since(), 'node 1\'s BGP sessions, since when up').to.deep.equal(before);
    await waitFor('every node on vxlan with nothing of bgp left', () => convergedOn(tc, NODES, 'vxlan', 'bgp'), 60_000, 250);
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });
});
