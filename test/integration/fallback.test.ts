/**
 * `Backend.Fallback` in steady state: host-gw with Fallback vxlan on three
 * nodes, node 2 on another subnet behind a router (test/harness/cluster.ts
 * `farNodes`). Every node runs both backends; host-gw carries the peer on
 * the same link (node 0 ↔ node 1), vxlan every peer beyond it (node 2), as
 * lib/agent/backend-set.ts and backends/assignment.ts decide — and `twill status`
 * says the same.
 *
 * Then the same three nodes with the near ones on a /23 (cluster.ts
 * `nearPrefixLen`): node 2's address lies inside their interface prefix,
 * but their kernel routes it via the router. "On the link" is what the
 * kernel's route lookup says (backends/direct-reach.ts), not the prefix:
 * host-gw still carries only node 0 ↔ node 1, and vxlan DirectRouting sends
 * directly only there too.
 */
import { expect } from 'chai';
import { spawn } from 'child_process';
import * as path from 'path';
import { allPodsPing } from '../harness/checks';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { UNDERLAY } from '../harness/cluster';
import { ping } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { waitFor } from '../harness/wait';
import type { StatusDocument } from '../../lib/cli/status/json';

const TWILL = path.resolve(__dirname, '../../cmd/twill.js');
const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw', Fallback: 'vxlan' } };
const FAR = 2;

interface LeaseValue {
  PublicIP: string;
  BackendType?: string;
  BackendData?: unknown;
  TwillBackends?: { Type: string; Data?: { VtepMAC?: string } }[];
}

async function leaseValue(tc: TwillCluster, node: number): Promise<LeaseValue> {
  const text = await tc.admin.get(`${PREFIX}/subnets/${tc.lease(node).subnet.replace('/', '-')}`).string();
  if (!text) throw new Error(`node ${node} has no lease in etcd`);
  return JSON.parse(text) as LeaseValue;
}

/** The main table's route for `subnet` on a node, as `ip route` prints it ('' when none). */
async function routeTo(tc: TwillCluster, node: number, subnet: string): Promise<string> {
  const lines = (await tc.net.ip(node, ['route', 'show'])).split('\n');
  return lines.find((l) => l.startsWith(`${subnet} `))?.trim() ?? '';
}

/** What the agents say, for assertion messages. */
function agentLogs(tc: TwillCluster): string {
  return [0, 1, 2].map((i) => `--- node ${i} ---\n${tc.logs(i).split('\n').slice(-15).join('\n')}`).join('\n');
}

function runStatusJson(endpoint: string): Promise<StatusDocument> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_')) env[k] = v;
    const child = spawn(process.execPath, [TWILL, 'status', '--json', '--etcd-endpoints', endpoint], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`twill status exited ${String(code)}: ${stderr}`));
      else resolve(JSON.parse(stdout) as StatusDocument);
    });
  });
}

describe('host-gw with Fallback vxlan: host-gw on the link, vxlan to the node behind a router', function () {
  this.timeout(180_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({ nodes: 3, farNodes: [FAR], config: CONFIG, agentArgs: ['--repair-interval', '2'] });
    expect(tc.net.nodeIps).to.deep.equal(['198.18.0.1', '198.18.0.2', '198.18.1.3']);
  });
  after(async () => {
    await tc?.destroy();
  });

  it('lets every pod ping every other pod', async () => {
    expect(await allPodsPing(tc), agentLogs(tc)).to.deep.equal([]);
  });

  it('gives pods the MTU both backends can carry (vxlan: external − 50)', () => {
    for (let i = 0; i < 3; i++) expect(tc.lease(i).mtu, `node ${i}`).to.equal(1450);
  });

  it('publishes host-gw as BackendType and both backends in TwillBackends, the vxlan VTEP MAC with them', async () => {
    for (let i = 0; i < 3; i++) {
      const v = await leaseValue(tc, i);
      expect(v.PublicIP, `node ${i}`).to.equal(tc.net.nodeIp(i));
      expect(v.BackendType, `node ${i}: ${JSON.stringify(v)}`).to.equal('host-gw');
      expect((v.TwillBackends ?? []).map((b) => b.Type), `node ${i}: ${JSON.stringify(v)}`).to.have.members(['host-gw', 'vxlan']);
      const vxlan = v.TwillBackends?.find((b) => b.Type === 'vxlan');
      expect(vxlan?.Data?.VtepMAC, `node ${i}: ${JSON.stringify(v)}`).to.match(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    }
  });

  it('on node 0: node 1 by a host-gw route via its public IP, node 2 by a vxlan onlink route', async () => {
    const sub1 = tc.lease(1).subnet;
    const sub2 = tc.lease(FAR).subnet;
    const gw2 = sub2.split('/')[0];
    await waitFor('node 0 to route both peers', async () => (await routeTo(tc, 0, sub1)) && (await routeTo(tc, 0, sub2)), 10_000).catch(() => undefined);
    const r1 = await routeTo(tc, 0, sub1);
    const r2 = await routeTo(tc, 0, sub2);
    const why = `node 0 routes:\n${await tc.net.ip(0, ['route', 'show'])}\n${agentLogs(tc)}`;
    expect(r1, why).to.equal(`${sub1} via 198.18.0.2 dev eth0 proto 118`);
    expect(r2, why).to.equal(`${sub2} via ${gw2} dev flannel.1 proto 117 onlink`);
  });

  it('on node 1: node 0 by host-gw, node 2 by vxlan', async () => {
    const why = `node 1 routes:\n${await tc.net.ip(1, ['route', 'show'])}`;
    expect(await routeTo(tc, 1, tc.lease(0).subnet), why).to.equal(`${tc.lease(0).subnet} via 198.18.0.1 dev eth0 proto 118`);
    const sub2 = tc.lease(FAR).subnet;
    expect(await routeTo(tc, 1, sub2), why).to.equal(`${sub2} via ${sub2.split('/')[0]} dev flannel.1 proto 117 onlink`);
  });

  it('on node 2 (behind the router): vxlan for both others, no host-gw route at all', async () => {
    const routes = await tc.net.ip(FAR, ['route', 'show']);
    const why = `node 2 routes:\n${routes}\n${agentLogs(tc)}`;
    for (const peer of [0, 1]) {
      const sub = tc.lease(peer).subnet;
      expect(await routeTo(tc, FAR, sub), why).to.equal(`${sub} via ${sub.split('/')[0]} dev flannel.1 proto 117 onlink`);
    }
    expect(await tc.net.ip(FAR, ['route', 'show', 'proto', '118']), why).to.equal('');
  });

  it('holds a vxlan FDB entry and neighbour on node 0 for node 2 only, none for node 1', async () => {
    const fdb = (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout;
    const neigh = await tc.net.ip(0, ['neigh', 'show', 'dev', 'flannel.1']);
    const mac2 = (await leaseValue(tc, FAR)).TwillBackends?.find((b) => b.Type === 'vxlan')?.Data?.VtepMAC;
    const mac1 = (await leaseValue(tc, 1)).TwillBackends?.find((b) => b.Type === 'vxlan')?.Data?.VtepMAC;
    expect(fdb, `fdb:\n${fdb}`).to.contain(`${mac2} dst 198.18.1.3 self permanent`);
    expect(fdb, `fdb:\n${fdb}`).not.to.contain('dst 198.18.0.2');
    expect(fdb, `fdb:\n${fdb}`).not.to.contain(`${mac1} `);
    expect(neigh, `neigh:\n${neigh}`).to.contain(`${tc.lease(FAR).subnet.split('/')[0]} lladdr ${mac2} PERMANENT`);
    expect(neigh, `neigh:\n${neigh}`).not.to.contain(`${tc.lease(1).subnet.split('/')[0]} `);
  });

  it('sends plain ICMP to pod 1 and VXLAN (udp 8472) toward node 2 on node 0\'s eth0', async () => {
    const cap = await startCapture(tc.nodeNs(0), 'eth0', 'icmp or udp port 8472');
    let frames;
    try {
      await ping(tc.podNs(0), tc.podIp(1), { count: 3, intervalMs: 100 });
      await ping(tc.podNs(0), tc.podIp(FAR), { count: 3, intervalMs: 100 });
    } finally {
      frames = await cap.stop();
    }
    const plainTo1 = frames.filter((f) => f.icmp?.type === 8 && f.outer.src === tc.podIp(0) && f.outer.dst === tc.podIp(1));
    expect(plainTo1.length, 'plain echo requests to pod 1').to.be.greaterThan(0);
    for (const f of plainTo1) expect(f.vxlan).to.equal(undefined);

    const toFar = frames.filter((f) => f.vxlan?.inner.ip?.src === tc.podIp(0) && f.vxlan.inner.ip.dst === tc.podIp(FAR));
    expect(toFar.length, 'encapsulated echo requests to pod 2').to.be.greaterThan(0);
    const mac2 = (await leaseValue(tc, FAR)).TwillBackends?.find((b) => b.Type === 'vxlan')?.Data?.VtepMAC;
    for (const f of toFar) {
      expect(f.outer).to.include({ src: '198.18.0.1', dst: '198.18.1.3', proto: 17 });
      expect(f.udp!.dstPort).to.equal(8472);
      expect(f.vxlan!.vni).to.equal(1);
      expect(f.vxlan!.inner.dstMac).to.equal(mac2);
    }
    // Neither the way round: no pod-1 traffic encapsulated, no pod-2 traffic in the clear.
    expect(frames.filter((f) => f.vxlan?.inner.ip?.dst === tc.podIp(1)), 'pod 1 traffic in VXLAN').to.have.length(0);
    expect(frames.filter((f) => f.icmp && f.outer.dst === tc.podIp(FAR)), 'pod 2 traffic in the clear').to.have.length(0);
  });

  it('twill status --json lists, per node, the backend its agent uses to each peer', async () => {
    await expectStatusPeers(tc);
  });
});

/** `twill status --json`: node 0 ↔ node 1 over host-gw, node 2 over vxlan, seen from every node. */
async function expectStatusPeers(tc: TwillCluster): Promise<void> {
    const doc = await runStatusJson(tc.etcd.endpointOn(UNDERLAY.bridgeIp));
    const sub = [0, 1, 2].map((i) => tc.lease(i).subnet);
    const peers = Object.fromEntries(doc.leases.map((l) => [l.subnet, l.peers]));
    expect(peers[sub[0]]).to.have.deep.members([{ subnet: sub[1], backend: 'host-gw', encrypted: false }, { subnet: sub[2], backend: 'vxlan', encrypted: false }]);
    expect(peers[sub[1]]).to.have.deep.members([{ subnet: sub[0], backend: 'host-gw', encrypted: false }, { subnet: sub[2], backend: 'vxlan', encrypted: false }]);
    expect(peers[sub[2]]).to.have.deep.members([{ subnet: sub[0], backend: 'vxlan', encrypted: false }, { subnet: sub[1], backend: 'vxlan', encrypted: false }]);
}

/** Waits until every `[node, subnet, route]` is what `ip route` shows, then asserts each (with the routes and logs when not). */
async function expectRoutes(tc: TwillCluster, want: readonly [number, string, string][]): Promise<void> {
  const all = async () => (await Promise.all(want.map(async ([n, sub, r]) => (await routeTo(tc, n, sub)) === r))).every(Boolean);
  await waitFor('the routes', all, 15_000, 200).catch(() => undefined);
  for (const [n, sub, r] of want) {
    const why = `node ${n} routes:\n${await tc.net.ip(n, ['route', 'show'])}\n${agentLogs(tc)}`;
    expect(await routeTo(tc, n, sub), why).to.equal(r);
  }
}

describe('the far node inside the near nodes\' /23 but routed via the router: on-link is the kernel\'s route, not the prefix', function () {
  this.timeout(180_000);

  /** Checks that the topology sets the trap: a /23 holding 198.18.1.3, and a route to it via the router. */
  async function expectTrap(tc: TwillCluster): Promise<void> {
    for (const n of [0, 1]) {
      expect(await tc.net.ip(n, ['-4', 'addr', 'show', 'dev', 'eth0'])).to.include(`inet ${tc.net.nodeIp(n)}/23`);
      expect(await tc.net.ip(n, ['route', 'get', tc.net.nodeIp(FAR)])).to.include(`${tc.net.nodeIp(FAR)} via ${UNDERLAY.gateway} dev eth0`);
    }
  }

  describe('host-gw with Fallback vxlan', function () {
    let tc: TwillCluster;

    before(async () => {
      tc = await TwillCluster.create({ nodes: 3, farNodes: [FAR], nearPrefixLen: 23, config: CONFIG, agentArgs: ['--repair-interval', '2'] });
      expect(tc.net.nodeIps).to.deep.equal(['198.18.0.1', '198.18.0.2', '198.18.1.3']);
    });
    after(async () => {
      await tc?.destroy();
    });

    it('has node 2 inside the near nodes\' prefix, and their kernel routes it via the router', async () => {
      await expectTrap(tc);
    });

    it('carries node 0 ↔ node 1 by host-gw and node 2 by vxlan, on every node', async () => {
      const sub = [0, 1, 2].map((i) => tc.lease(i).subnet);
      const hostGw = (n: number, peer: number): [number, string, string] => [n, sub[peer], `${sub[peer]} via ${tc.net.nodeIp(peer)} dev eth0 proto 118`];
      const vxlan = (n: number, peer: number): [number, string, string] => [n, sub[peer], `${sub[peer]} via ${sub[peer].split('/')[0]} dev flannel.1 proto 117 onlink`];
      await expectRoutes(tc, [hostGw(0, 1), vxlan(0, FAR), hostGw(1, 0), vxlan(1, FAR), vxlan(FAR, 0), vxlan(FAR, 1)]);
      expect(await tc.net.ip(FAR, ['route', 'show', 'proto', '118'])).to.equal('');
    });

    it('lets every pod ping every other pod', async () => {
      expect(await allPodsPing(tc), agentLogs(tc)).to.deep.equal([]);
    });

    it('twill status --json agrees (it assumes /24 underlays, which here gives the agents\' answer)', async () => {
      await expectStatusPeers(tc);
    });
  });

  describe('vxlan with DirectRouting', function () {
    let tc: TwillCluster;

    before(async () => {
      tc = await TwillCluster.create({
        nodes: 3, farNodes: [FAR], nearPrefixLen: 23, agentArgs: ['--repair-interval', '2'],
        config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan', DirectRouting: true } },
      });
    });
    after(async () => {
      await tc?.destroy();
    });

    it('routes node 0 ↔ node 1 directly via the public IP and node 2 through flannel.1, on every node', async () => {
      await expectTrap(tc);
      const sub = [0, 1, 2].map((i) => tc.lease(i).subnet);
      const direct = (n: number, peer: number): [number, string, string] => [n, sub[peer], `${sub[peer]} via ${tc.net.nodeIp(peer)} dev eth0 proto 117`];
      const tunnel = (n: number, peer: number): [number, string, string] => [n, sub[peer], `${sub[peer]} via ${sub[peer].split('/')[0]} dev flannel.1 proto 117 onlink`];
      await expectRoutes(tc, [direct(0, 1), tunnel(0, FAR), direct(1, 0), tunnel(1, FAR), tunnel(FAR, 0), tunnel(FAR, 1)]);
    });

    it('lets every pod ping every other pod', async () => {
      expect(await allPodsPing(tc), agentLogs(tc)).to.deep.equal([]);
    });
  });

  describe('host-gw alone', function () {
    let tc: TwillCluster;

    before(async () => {
      tc = await TwillCluster.create({
        nodes: 3, farNodes: [FAR], nearPrefixLen: 23, agentArgs: ['--repair-interval', '2'],
        config: { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } },
      });
    });
    after(async () => {
      await tc?.destroy();
    });

    it('routes the near peer, installs no host-gw route to the far one, and says why and what to do', async () => {
      await expectTrap(tc);
      const sub = [0, 1, 2].map((i) => tc.lease(i).subnet);
      await expectRoutes(tc, [[0, sub[1], `${sub[1]} via ${tc.net.nodeIp(1)} dev eth0 proto 118`], [0, sub[FAR], '']]);
      await waitFor('node 0 to say why node 2 is not carried', async () => tc.logs(0).includes(`(${tc.net.nodeIp(FAR)}) terminates host-gw; this node runs host-gw; host-gw cannot reach it (`), 15_000);
      const line = tc.logs(0).split('\n').find((l) => l.includes(`(${tc.net.nodeIp(FAR)}) terminates host-gw`))!;
      expect(line).to.contain(`via ${UNDERLAY.gateway}`);
      expect(line).to.contain('give host-gw a Fallback (e.g. "Fallback": "vxlan") to carry such peers');
      expect((await ping(tc.podNs(0), tc.podIp(1))).received, 'pod 0 -> pod 1 over host-gw').to.be.greaterThan(0);
    });
  });
});

describe('dual stack: host-gw with Fallback vxlan carries each peer\'s IPv6 subnet as it carries its IPv4 one', function () {
  this.timeout(180_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({
      nodes: 3, farNodes: [FAR], ipv6: true, agentArgs: ['--repair-interval', '2'],
      config: { ...CONFIG, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' },
    });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('routes node 1\'s IPv6 subnet by host-gw via its PublicIPv6 and node 2\'s through flannel-v6.1; every pod reaches every pod over both families', async () => {
    const sub6 = [0, 1, 2].map((i) => tc.lease(i).ipv6Subnet!);
    const routes = async (n: number) => tc.net.ip(n, ['-6', 'route', 'show']);
    const line = async (n: number, sub: string) => (await routes(n)).split('\n').find((l) => l.startsWith(`${sub} `))?.trim() ?? '';
    await waitFor('node 0 to route both peers\' IPv6 subnets', async () => (await line(0, sub6[1])).includes('proto 118') && (await line(0, sub6[FAR])).includes('flannel-v6.1'), 15_000).catch(() => undefined);
    const why = `node 0 IPv6 routes:\n${await routes(0)}\n${agentLogs(tc)}`;
    expect(await line(0, sub6[1]), why).to.match(new RegExp(`^${sub6[1]} via fd00:198:18::2 dev eth0 proto 118`));
    expect(await line(0, sub6[FAR]), why).to.match(new RegExp(`^${sub6[FAR]} via fe80::\\S+ dev flannel-v6\\.1 proto 117`));
    expect(await line(FAR, sub6[0]), why).to.match(new RegExp(`^${sub6[0]} via fe80::\\S+ dev flannel-v6\\.1 proto 117`));
    expect(await tc.net.ip(FAR, ['-6', 'route', 'show', 'proto', '118'])).to.equal('');
    expect(await allPodsPing(tc), agentLogs(tc)).to.deep.equal([]);
    expect(await allPodsPing(tc, [0, 1, 2], 6), agentLogs(tc)).to.deep.equal([]);
  });
});
