/**
 * Control-plane faults (reliability issue, faults 1–4): etcd stopped for a
 * minute, an agent cut off past its lease TTL, a 3-member etcd cluster losing
 * members, and a compaction past an agent's watch — with pods pinging each
 * other throughout. Figures are printed for bench/README.md.
 */
import { expect } from 'chai';
import * as http from 'http';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { UNDERLAY } from '../harness/cluster';
import { startPingStream, PingStream, PingStreamReport } from '../harness/ping';
import { startTcpProxy, TcpProxy } from '../harness/tcp-proxy';
import { startEtcdCluster, EtcdCluster } from '../harness/etcd-cluster';
import { run, nsArgv } from '../harness/netns';
import { waitFor, sleep } from '../harness/wait';

const HEALTH_PORT = 9102;
const OUTAGE_SECONDS = Number(process.env.TWILL_ETCD_OUTAGE_SECONDS ?? 60);

function fakeLease(n: number): { key: string; value: string; subnet: string } {
  const subnet = `10.244.${200 + n}.0/24`;
  const value = JSON.stringify({ PublicIP: `198.18.0.${100 + n}`, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `0e:01:c6:12:00:${(0x10 + n).toString(16)}` } });
  return { key: `${PREFIX}/subnets/10.244.${200 + n}.0-24`, value, subnet };
}

async function routed(tc: TwillCluster, node: number, subnet: string): Promise<boolean> {
  return (await tc.net.ip(node, ['route', 'show', subnet])).includes('flannel.1');
}

function readyz(node: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: `198.18.0.${node + 1}`, port: HEALTH_PORT, path: '/readyz', timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** Pods 0→1, 1→2, 2→0 at 100 packets/s each. */
async function ring(tc: TwillCluster, nodes = [0, 1, 2]): Promise<PingStream[]> {
  const streams: PingStream[] = [];
  for (let i = 0; i < nodes.length; i++) {
    const from = nodes[i];
    const to = nodes[(i + 1) % nodes.length];
    streams.push(await startPingStream(tc.podNs(from), tc.podIp(to), 100));
  }
  for (const s of streams) await s.waitForReplies(10, 5000);
  return streams;
}

async function stopAll(streams: PingStream[]): Promise<PingStreamReport[]> {
  return Promise.all(streams.map((s) => s.stop()));
}

function summary(reports: PingStreamReport[]): { sent: number; lost: number; maxGapMs: number } {
  return {
    sent: reports.reduce((a, r) => a + r.sent, 0),
    lost: reports.reduce((a, r) => a + r.lost, 0),
    maxGapMs: Math.max(...reports.map((r) => r.maxGapMs)),
  };
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('control-plane faults: etcd outage, lease expiry while cut off, compaction (3 nodes, 100 pps probes)', function () {
  this.timeout(OUTAGE_SECONDS * 1000 + 240_000);
  let tc: TwillCluster;
  let proxy: TcpProxy;

  before(async () => {
    tc = await TwillCluster.create({
      nodes: 3,
      config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } },
      start: false,
    });
    // Node 2 reaches etcd through a proxy the tests can cut; its lease lives 8 s.
    proxy = await startTcpProxy(tc.etcd.port, { listenHost: UNDERLAY.bridgeIp, targetHost: '127.0.0.1' });
    const endpoint = tc.etcd.endpointOn(UNDERLAY.bridgeIp);
    for (let i = 0; i < 3; i++) {
      const args = ['--healthz-ip', `198.18.0.${i + 1}`, '--healthz-port', String(HEALTH_PORT), '--repair-interval', '2'];
      if (i === 2) args.push('--etcd-endpoints', proxy.endpoint, '--subnet-lease-ttl', '8');
      else args.push('--etcd-endpoints', endpoint);
      await tc.startAgent(i, args);
    }
    for (let i = 0; i < 3; i++) await tc.addPod(i);
  });
  after(async () => {
    await proxy?.close();
    await tc?.destroy();
  });

  it(`keeps every packet through ${OUTAGE_SECONDS} s without etcd, reports not-ready meanwhile, logs once each way, and sees changes made after`, async () => {
    const streams = await ring(tc);
    const logsBefore = [0, 1, 2].map((i) => tc.logs(i).length);
    await tc.etcd.stop();
    const outageStart = Date.now();
    const notReady = await waitFor('node 0 to report not-ready', async () => {
      const r = await readyz(0);
      return r.status === 503 ? r : undefined;
    }, 30_000);
    expect(notReady!.body).to.match(/etcd/i);
    await sleep(Math.max(0, OUTAGE_SECONDS * 1000 - (Date.now() - outageStart)));
    await tc.etcd.start();
    const restarted = Date.now();
    const f = fakeLease(1);
    await tc.admin.put(f.key).value(f.value);
    for (let i = 0; i < 3; i++) await waitFor(`node ${i} to program a lease written after the outage`, () => routed(tc, i, f.subnet), 60_000);
    const convergedMs = Date.now() - restarted;
    await waitFor('node 0 to be ready again', async () => (await readyz(0)).status === 200, 30_000);
    const report = summary(await stopAll(streams));
    console.log(`      figures: outage ${OUTAGE_SECONDS} s, probes sent ${report.sent}, lost ${report.lost}, longest gap ${report.maxGapMs} ms, change after restart programmed on all nodes in ${convergedMs} ms`);
    expect(report.lost).to.equal(0);
    for (let i = 0; i < 3; i++) {
      const said = tc.logs(i).slice(logsBefore[i]);
      expect(count(said, 'lost contact with etcd'), `node ${i} log:\n${said}`).to.equal(1);
      expect(count(said, 'etcd reachable again'), `node ${i} log:\n${said}`).to.equal(1);
    }
    await tc.admin.delete().key(f.key);
  });

  it('after a compaction past a cut-off agent\'s watch revision: one re-list, no loop, converges to etcd', async () => {
    const before = tc.logs(2).length;
    proxy.cut();
    await sleep(500);
    const f = fakeLease(2);
    await tc.admin.put(f.key).value(f.value);
    const rev = (await tc.admin.kv.range({ key: Buffer.from('x') })).header.revision;
    await tc.admin.kv.compact({ revision: rev, physical: true });
    proxy.restore();
    const t0 = Date.now();
    await waitFor('node 2 to program the lease it missed', () => routed(tc, 2, f.subnet), 60_000);
    const convergeMs = Date.now() - t0;
    await sleep(5000); // a loop would show up as repeated re-lists
    const said = tc.logs(2).slice(before);
    console.log(`      figures: converged ${convergeMs} ms after the cut ended; re-lists ${count(said, 'leases re-listed')}`);
    expect(count(said, 'leases re-listed'), said).to.equal(1);
    expect(count(said, 'lease watch ended'), said).to.be.at.most(1);
    await tc.admin.delete().key(f.key);
  });

  it('gets the same subnet back after being cut off past its lease TTL, when nobody took it', async () => {
    const streams = await ring(tc, [0, 1]);
    const subnet = tc.lease(2).subnet;
    const key = `${PREFIX}/subnets/${subnet.replace('/', '-')}`;
    proxy.cut();
    await waitFor('node 2\'s lease to expire', async () => (await tc.admin.get(key).string()) === null, 20_000);
    proxy.restore();
    await waitFor('node 2\'s lease to return', async () => (await tc.admin.get(key).string()) !== null, 60_000);
    expect(tc.lease(2).subnet).to.equal(subnet);
    for (const i of [0, 1]) await waitFor(`node ${i} to route node 2 again`, () => routed(tc, i, subnet), 10_000);
    const report = summary(await stopAll(streams));
    expect(report.lost, 'pods 0 and 1 never noticed').to.equal(0);
  });

  it('moves to a new subnet, rewrites subnet.env and says so loudly when its subnet was taken meanwhile', async () => {
    const subnet = tc.lease(2).subnet;
    const key = `${PREFIX}/subnets/${subnet.replace('/', '-')}`;
    const before = tc.logs(2).length;
    proxy.cut();
    await waitFor('node 2\'s lease to expire', async () => (await tc.admin.get(key).string()) === null, 20_000);
    await tc.admin.put(key).value('{"PublicIP":"198.18.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:01:c6:12:00:63"}}');
    proxy.restore();
    await waitFor('node 2 to move', () => tc.readSubnetFile(2)?.subnet !== subnet, 60_000);
    const moved = tc.lease(2).subnet;
    const said = tc.logs(2).slice(before);
    expect(said).to.match(/own subnet was taken by another node; moved to a new subnet/);
    expect(said).to.contain(`old=${subnet}`).and.to.contain(`new=${moved}`);
    const metrics = await new Promise<string>((resolve, reject) => {
      http.get({ host: '198.18.0.3', port: HEALTH_PORT, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    expect(metrics).to.match(/^twill_subnet_changes_total 1$/m);
    for (const i of [0, 1]) await waitFor(`node ${i} to route node 2's new subnet`, () => routed(tc, i, moved), 10_000);
    await tc.admin.delete().key(key);
  });

  // Last: it stops node 2's twilld. A link that drops packets, unlike a closed
  // connection, never ends etcd's watch stream; twilld must not wait for it.
  it('exits 0 on SIGTERM within the kubelet\'s 30 s grace while its etcd link drops every packet, leaving the datapath', async () => {
    const subnet = tc.lease(2).subnet;
    await tc.net.exec(2, ['nft', 'add', 'table', 'ip', 'twtest']);
    await tc.net.exec(2, ['nft', 'add', 'chain', 'ip', 'twtest', 'out', '{ type filter hook output priority 0; }']);
    await tc.net.exec(2, ['nft', 'add', 'rule', 'ip', 'twtest', 'out', 'ip', 'daddr', UNDERLAY.bridgeIp, 'tcp', 'dport', String(proxy.port), 'drop']);
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      tc.stopAgent(2),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still running after 30 s'), 30_000))),
    ]).finally(() => clearTimeout(timer));
    expect(stopped).to.equal(0);
    console.log(`      figures: exited ${Date.now() - started} ms after SIGTERM`);
    expect(await tc.net.ip(2, ['link', 'show', 'flannel.1']), 'flannel.1 left in place').to.contain('flannel.1');
    expect(await routed(tc, 2, tc.lease(0).subnet), 'the route to node 0 left in place').to.equal(true);
    expect(tc.readSubnetFile(2)?.subnet).to.equal(subnet);
  });
});

describe('a 3-member etcd cluster losing its leader, then the member an agent talks to (3 nodes, 100 pps probes)', function () {
  this.timeout(180_000);
  let tc: TwillCluster;
  let etcds: EtcdCluster;

  before(async () => {
    tc = await TwillCluster.create({ nodes: 3, config: {}, start: false });
    etcds = await startEtcdCluster(3, { listenIPs: [UNDERLAY.bridgeIp] });
    await etcds.client().put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    for (let i = 0; i < 3; i++) await tc.startAgent(i, ['--etcd-endpoints', etcds.endpointsOn(UNDERLAY.bridgeIp)]);
    for (let i = 0; i < 3; i++) await tc.addPod(i);
  });
  after(async () => {
    await tc?.destroy();
    await etcds?.destroy();
  });

  /** The member node 0's agent holds a connection to, from the kernel's socket table. */
  async function memberInUse(): Promise<string | undefined> {
    const pid = tc.agents.get(0)!.pid;
    const out = (await run(nsArgv(tc.nodeNs(0), ['ss', '-tnpH', 'state', 'established']))).stdout;
    for (const line of out.split('\n')) {
      if (!line.includes(`pid=${pid},`)) continue;
      const m = etcds.members.find((x) => line.includes(`${UNDERLAY.bridgeIp}:${x.clientPort}`));
      if (m) return m.name;
    }
    return undefined;
  }

  it('carries on through the others with no lost probe', async () => {
    const streams = await ring(tc);
    const admin = etcds.client();
    const leader = await etcds.leader();
    await etcds.members.find((m) => m.name === leader)!.stop();
    await etcds.waitHealthy();
    const a = fakeLease(3);
    await admin.put(a.key).value(a.value);
    for (let i = 0; i < 3; i++) await waitFor(`node ${i} to program a lease written after the leader stopped`, () => routed(tc, i, a.subnet), 30_000);
    etcds.members.find((m) => m.name === leader)!.start();
    await etcds.waitHealthy();

    const used = await waitFor('node 0\'s etcd connection', memberInUse, 10_000);
    await etcds.members.find((m) => m.name === used)!.stop();
    await etcds.waitHealthy();
    const b = fakeLease(4);
    await admin.put(b.key).value(b.value);
    for (let i = 0; i < 3; i++) await waitFor(`node ${i} to program a lease written after its member stopped`, () => routed(tc, i, b.subnet), 30_000);
    const report = summary(await stopAll(streams));
    console.log(`      figures: leader ${leader} stopped, then ${used}; probes sent ${report.sent}, lost ${report.lost}, longest gap ${report.maxGapMs} ms`);
    expect(report.lost).to.equal(0);
  });
});
