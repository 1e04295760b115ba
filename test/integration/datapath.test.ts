import { expect } from 'chai';
import { allPodsPing } from '../harness/checks';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { ping, startPingStream } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { waitFor } from '../harness/wait';

const NODES = 3;

async function ipOut(tc: TwillCluster, node: number, args: string[]): Promise<string> {
  return tc.net.ip(node, args);
}

describe('vxlan datapath: 3 nodes running twilld', function () {
  this.timeout(120_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({
      nodes: NODES,
      config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } },
      agentArgs: ['--repair-interval', '2'],
    });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('gives pods the vxlan MTU (external − 50) in subnet.env', () => {
    for (let i = 0; i < NODES; i++) expect(tc.lease(i).mtu).to.equal(1450);
  });

  it('lets every pod ping every other pod', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  it('programs flannel.1 like flanneld: VNI 1, port 8472, learning off, the derived VTEP MAC in the lease', async () => {
    const link = await ipOut(tc, 0, ['-d', 'link', 'show', 'flannel.1']);
    expect(link).to.match(/vxlan id 1 /).and.to.match(/dstport 8472/).and.to.match(/nolearning/);
    const value = await tc.admin.get(`${PREFIX}/subnets/${tc.lease(0).subnet.replace('/', '-')}`).string();
    const mac = /link\/ether ([0-9a-f:]+)/.exec(link)![1];
    expect(JSON.parse(value!)).to.deep.equal({ PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
  });

  it('holds on each node one neighbour, FDB entry and onlink route per peer', async () => {
    const fdb = await ipOut(tc, 0, ['-d', 'link']).then(() => tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']));
    const neigh = await ipOut(tc, 0, ['neigh', 'show', 'dev', 'flannel.1']);
    const routes = await ipOut(tc, 0, ['route', 'show', 'dev', 'flannel.1']);
    for (const peer of [1, 2]) {
      const subnet = tc.lease(peer).subnet;
      const gw = subnet.split('/')[0];
      const mac = JSON.parse((await tc.admin.get(`${PREFIX}/subnets/${subnet.replace('/', '-')}`).string())!).BackendData.VtepMAC as string;
      expect(fdb.stdout).to.contain(`${mac} dst 198.18.0.${peer + 1} self permanent`);
      expect(neigh).to.contain(`${gw} lladdr ${mac} PERMANENT`);
      expect(routes).to.contain(`${subnet} via ${gw} proto 117 onlink`);
    }
  });

  it('shows VXLAN on UDP 8472 with VNI 1 and the peer VTEP MAC on the underlay', async () => {
    const cap = await startCapture(tc.nodeNs(0), 'eth0', 'udp port 8472');
    await ping(tc.podNs(0), tc.podIp(1), { count: 3, intervalMs: 100 });
    const frames = await cap.stop();
    const peerMac = JSON.parse((await tc.admin.get(`${PREFIX}/subnets/${tc.lease(1).subnet.replace('/', '-')}`).string())!).BackendData.VtepMAC as string;
    const requests = frames.filter((f) => f.vxlan?.inner.ip?.src === tc.podIp(0) && f.vxlan.inner.ip.dst === tc.podIp(1));
    expect(requests.length, 'encapsulated echo requests').to.be.greaterThan(0);
    for (const f of requests) {
      expect(f.outer.src).to.equal('198.18.0.1');
      expect(f.outer.dst).to.equal('198.18.0.2');
      expect(f.udp!.dstPort).to.equal(8472);
      expect(f.vxlan!.vni).to.equal(1);
      expect(f.vxlan!.inner.dstMac).to.equal(peerMac);
    }
  });

  it('restores a route, an FDB entry and a neighbour deleted by hand within one repair interval', async () => {
    const subnet = tc.lease(1).subnet;
    const gw = subnet.split('/')[0];
    const mac = JSON.parse((await tc.admin.get(`${PREFIX}/subnets/${subnet.replace('/', '-')}`).string())!).BackendData.VtepMAC as string;
    await ipOut(tc, 0, ['route', 'del', subnet, 'dev', 'flannel.1']);
    await tc.net.exec(0, ['bridge', 'fdb', 'del', mac, 'dev', 'flannel.1', 'dst', '198.18.0.2']);
    await ipOut(tc, 0, ['neigh', 'del', gw, 'dev', 'flannel.1']);
    await waitFor('all three entries to come back', async () => {
      const routes = await ipOut(tc, 0, ['route', 'show', 'dev', 'flannel.1']);
      const fdb = (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout;
      const neigh = await ipOut(tc, 0, ['neigh', 'show', 'dev', 'flannel.1']);
      return routes.includes(subnet) && fdb.includes(`${mac} dst 198.18.0.2`) && neigh.includes(`${gw} lladdr ${mac}`);
    }, 3000);
  });

  it('keeps every packet of a 50 pps ping through a twilld restart, with the same VTEP MAC', async () => {
    const macBefore = /link\/ether ([0-9a-f:]+)/.exec(await ipOut(tc, 1, ['link', 'show', 'flannel.1']))![1];
    const stream = await startPingStream(tc.podNs(0), tc.podIp(1), 50);
    await stream.waitForReplies(20, 5000);
    expect(await tc.restartAgent(1)).to.equal(0);
    await stream.waitForReplies(stream.received + 25, 5000);
    const report = await stream.stop();
    expect(report.lost, `lost ${report.lostSeqs.join(',')}`).to.equal(0);
    const macAfter = /link\/ether ([0-9a-f:]+)/.exec(await ipOut(tc, 1, ['link', 'show', 'flannel.1']))![1];
    expect(macAfter).to.equal(macBefore);
  });

  it('replaces the old FDB entry when a peer\'s lease changes its VTEP MAC (flanneld leaks it)', async () => {
    const key = `${PREFIX}/subnets/10.244.200.0-24`;
    const lease = (mac: string) => JSON.stringify({ PublicIP: '198.18.0.50', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    const fdb = async () => (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout;
    await tc.admin.put(key).value(lease('0e:01:c6:12:00:aa'));
    await waitFor('the first MAC', async () => (await fdb()).includes('0e:01:c6:12:00:aa dst 198.18.0.50'), 5000);
    await tc.admin.put(key).value(lease('0e:01:c6:12:00:bb'));
    await waitFor('the second MAC alone', async () => {
      const f = await fdb();
      return f.includes('0e:01:c6:12:00:bb dst 198.18.0.50') && !f.includes('0e:01:c6:12:00:aa');
    }, 5000);
    expect(await ipOut(tc, 0, ['neigh', 'show', '10.244.200.0', 'dev', 'flannel.1'])).to.contain('0e:01:c6:12:00:bb');
    await tc.admin.delete().key(key);
    await waitFor('all its entries to go', async () => !(await fdb()).includes('198.18.0.50') && !(await ipOut(tc, 0, ['route', 'show', '10.244.200.0/24'])), 5000);
  });

  it('removes a departed node\'s entries from the others, and reaches it again when it rejoins', async () => {
    const subnet = tc.lease(2).subnet;
    expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
    await tc.admin.delete().key(`${PREFIX}/subnets/${subnet.replace('/', '-')}`);
    await waitFor('node 0 to forget node 2', async () => {
      const routes = await ipOut(tc, 0, ['route', 'show', 'dev', 'flannel.1']);
      const fdb = (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout;
      const neigh = await ipOut(tc, 0, ['neigh', 'show', 'dev', 'flannel.1']);
      return !routes.includes(subnet) && !fdb.includes('dst 198.18.0.3') && !neigh.includes(subnet.split('/')[0] + ' ');
    }, 5000);
    await tc.startAgent(2);
    expect(tc.lease(2).subnet, 'the rejoining node keeps its subnet (from subnet.env)').to.equal(subnet);
    await waitFor('pod 0 to reach pod 2 again', async () => (await ping(tc.podNs(0), tc.podIp(2), { count: 1, timeoutMs: 1000 })).received > 0, 10_000);
  });
});

describe('host-gw datapath: 3 nodes running twilld', function () {
  this.timeout(120_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({ nodes: NODES, config: { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } }, agentArgs: ['--repair-interval', '2'] });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('lets every pod ping every other pod with the full underlay MTU', async () => {
    expect(tc.lease(0).mtu).to.equal(1500);
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  it('routes each peer subnet via the peer\'s public IP on eth0', async () => {
    const routes = await ipOut(tc, 0, ['route', 'show', 'proto', '118']);
    expect(routes).to.contain(`${tc.lease(1).subnet} via 198.18.0.2 dev eth0`).and.to.contain(`${tc.lease(2).subnet} via 198.18.0.3 dev eth0`);
  });

  it('sends plain IP between the pods over the underlay, without encapsulation', async () => {
    const cap = await startCapture(tc.nodeNs(0), 'eth0', 'icmp');
    await ping(tc.podNs(0), tc.podIp(2), { count: 3, intervalMs: 100 });
    const frames = await cap.stop();
    const requests = frames.filter((f) => f.outer.src === tc.podIp(0) && f.outer.dst === tc.podIp(2));
    expect(requests.length).to.be.greaterThan(0);
    expect(requests.every((f) => f.eth.dstMac !== undefined)).to.equal(true);
  });

  it('restores a route deleted by hand within one repair interval', async () => {
    const subnet = tc.lease(1).subnet;
    await ipOut(tc, 0, ['route', 'del', subnet]);
    await waitFor('the route to come back', async () => (await ipOut(tc, 0, ['route', 'show', subnet])).includes('via 198.18.0.2'), 3000);
  });
});

describe('vxlan with DirectRouting: on-link peers get plain routes, no encapsulation', function () {
  this.timeout(120_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({ nodes: NODES, config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan', DirectRouting: true } } });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('routes on-link peers via their public IP on eth0 and lets every pod ping every other pod', async () => {
    const routes = await ipOut(tc, 0, ['route', 'show', 'proto', '117']);
    expect(routes).to.contain(`${tc.lease(1).subnet} via 198.18.0.2 dev eth0`).and.to.contain(`${tc.lease(2).subnet} via 198.18.0.3 dev eth0`);
    expect((await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout).to.not.contain('dst 198.18.0.');
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  it('sends no VXLAN between on-link peers', async () => {
    const cap = await startCapture(tc.nodeNs(0), 'eth0', 'udp port 8472 or icmp');
    await ping(tc.podNs(0), tc.podIp(1), { count: 3, intervalMs: 100 });
    const frames = await cap.stop();
    expect(frames.filter((f) => f.udp?.dstPort === 8472)).to.deep.equal([]);
    expect(frames.some((f) => f.outer.src === tc.podIp(0) && f.outer.dst === tc.podIp(1))).to.equal(true);
  });
});
