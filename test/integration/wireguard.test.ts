/**
 * The wireguard backend on 3 nodes running twilld, with wireguard-go as the
 * engine (this kernel has no WireGuard): pods reach each other, the
 * underlay carries nothing but WireGuard on UDP 51820 with no pod address
 * in clear, the lease is flanneld's, a peer with a bad key is skipped with a
 * warning, a peer removed from wireguard-go by hand or a killed wireguard-go
 * comes back, a twilld restart loses nothing, and the cluster migrates
 * wireguard → vxlan → wireguard at 200 pps without losing a probe.
 */
import { expect } from 'chai';
import { readFileSync, statSync } from 'fs';
import * as path from 'path';
import { allPodsPing, httpBody } from '../harness/checks';
import { runTwill } from '../harness/diagnose';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { ping, startPingStream } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { netnsPids } from '../harness/netns';
import { UNDERLAY } from '../harness/cluster';
import { hasFootprint, migrateUnderProbes } from '../harness/migration';
import { waitFor } from '../harness/wait';
import { getDevice, setDevice } from '../../backends/wireguard/uapi';
import { keyToHex, publicKeyOf } from '../../backends/wireguard/keys';

const NODES = 3;
const NETWORK = '10.244.0.0/16';
const HEALTH_PORT = 9454;
const metrics = (node: number) => httpBody(`198.18.0.${node + 1}`, HEALTH_PORT, '/metrics');

interface LogLine {
  level: string;
  message: string;
  how?: string;
}

function logLines(tc: TwillCluster, node: number): LogLine[] {
  return tc.logs(node).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

describe('wireguard backend (wireguard-go): 3 nodes running twilld', function () {
  this.timeout(300_000);
  let tc: TwillCluster;
  /** Each node's wireguard-go directory (socket, PID file, log), by its network namespace's inode. */
  const socket = (node: number) => path.join(tc.wireguardRunDir(node), 'flannel-wg.sock');
  const wireguardGo = (node: number) => Number(readFileSync(path.join(tc.wireguardRunDir(node), 'wireguard-go.pid'), 'utf8').trim());
  const putConfig = (backend: object) => tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: NETWORK, Backend: backend }));

  before(async () => {
    tc = await TwillCluster.create({
      nodes: NODES,
      config: { Network: NETWORK, Backend: { Type: 'wireguard' } },
      agentArgs: ['--repair-interval', '2', '--log-format', 'json', '--healthz-port', String(HEALTH_PORT)],
      agentArgsFor: (node) => ['--healthz-ip', `198.18.0.${node + 1}`],
      start: false,
    });
    for (let i = 0; i < NODES; i++) await tc.startAgent(i);
    for (let i = 0; i < NODES; i++) await tc.addPod(i);
  });
  after(async () => {
    // The cluster kills every process of its namespaces (wireguard-go included) by PID and removes their run directories.
    await tc?.destroy();
  });

  it('gives pods the MTU external − 80 and publishes flanneld\'s lease: BackendData {"PublicKey": <the key file\'s public key>}', async () => {
    for (let i = 0; i < NODES; i++) {
      expect(tc.lease(i).mtu).to.equal(1420);
      const value = JSON.parse((await tc.admin.get(`${PREFIX}/subnets/${tc.lease(i).subnet.replace('/', '-')}`).string())!) as object;
      const priv = readFileSync(tc.wireguardKeyFile(i), 'utf8');
      expect(statSync(tc.wireguardKeyFile(i)).mode & 0o777, 'key file mode').to.equal(0o600);
      expect(value).to.deep.equal({ PublicIP: `198.18.0.${i + 1}`, PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: publicKeyOf(priv) } });
    }
  });

  it('lets every pod ping every other pod, with a handshake between every pair of nodes', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
    for (let i = 0; i < NODES; i++) {
      const dev = await getDevice(socket(i));
      expect(dev.listenPort).to.equal(51820);
      expect(dev.peers.length, `node ${i}: wireguard peers`).to.equal(NODES - 1);
      for (const p of dev.peers) {
        const node = Number(/^198\.18\.0\.(\d+):51820$/.exec(p.endpoint ?? '')?.[1]) - 1;
        expect(node, `endpoint ${p.endpoint}`).to.be.within(0, NODES - 1);
        expect(p.allowedIPs).to.deep.equal([tc.lease(node).subnet]);
        expect(p.lastHandshakeSec, `node ${i} -> node ${node}: handshake`).to.be.greaterThan(0);
      }
    }
  });

  it('programs flannel-wg with the subnet address and a route per peer (protocol 125)', async () => {
    const link = await tc.net.ip(0, ['-d', 'link', 'show', 'flannel-wg']);
    expect(link).to.contain('mtu 1420').and.to.match(/\btun\b/);
    expect(await tc.net.ip(0, ['-4', 'addr', 'show', 'dev', 'flannel-wg'])).to.contain(`inet ${tc.lease(0).subnet.split('/')[0]}/32`);
    const routes = await tc.net.ip(0, ['route', 'show', 'proto', '125']);
    for (const peer of [1, 2]) expect(routes).to.contain(`${tc.lease(peer).subnet} dev flannel-wg scope link`);
  });

  it('puts nothing but WireGuard (UDP 51820 between node addresses) on the underlay, with no pod address in clear', async () => {
    const wire = await startCapture(tc.nodeNs(0), 'eth0', `ip and not host ${UNDERLAY.bridgeIp}`);
    await ping(tc.podNs(0), tc.podIp(2), { count: 5, intervalMs: 50 });
    await ping(tc.podNs(1), tc.podIp(0), { count: 5, intervalMs: 50 });
    const frames = await wire.stop();
    expect(frames.length, 'frames on node 0\'s eth0').to.be.at.least(20);
    const podAddrs = [0, 1, 2].map((i) => Buffer.from(tc.podIp(i).split('.').map(Number)));
    for (const f of frames) {
      expect(f.outer.proto, 'IP protocol').to.equal(17);
      expect(f.udp, 'UDP ports').to.deep.equal({ srcPort: 51820, dstPort: 51820 });
      expect([f.outer.src, f.outer.dst].every((a) => /^198\.18\.0\.[1-3]$/.test(a)), `${f.outer.src} -> ${f.outer.dst}`).to.equal(true);
      for (const a of podAddrs) expect(f.raw.includes(a), `pod address ${a.join('.')} in clear`).to.equal(false);
    }
  });

  it('skips a peer whose lease has no valid PublicKey, or this node\'s own key, with one warning each naming it, and keeps carrying the others', async () => {
    const bad = `${PREFIX}/subnets/10.244.250.0-24`;
    const mine = `${PREFIX}/subnets/10.244.251.0-24`;
    const ownKey = publicKeyOf(readFileSync(tc.wireguardKeyFile(0), 'utf8'));
    await tc.admin.put(bad).value(JSON.stringify({ PublicIP: '198.18.0.99', PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: 'not-a-key' } }));
    await tc.admin.put(mine).value(JSON.stringify({ PublicIP: '198.18.0.98', PublicIPv6: null, BackendType: 'wireguard', BackendData: { PublicKey: ownKey } }));
    try {
      const warned = (subnet: string, what: string) => logLines(tc, 0).filter((l) => l.level === 'warn' && l.message.includes(subnet) && l.message.includes(what));
      await waitFor('a warning about each lease', () => warned('10.244.250.0/24', 'PublicKey').length > 0 && warned('10.244.251.0/24', 'own WireGuard public key').length > 0, 10_000);
      await new Promise((r) => setTimeout(r, 2500)); // a repair interval later: still one warning each
      expect(warned('10.244.250.0/24', 'PublicKey').map((l) => l.message), 'warnings').to.have.length(1);
      expect(warned('10.244.251.0/24', 'own WireGuard public key').map((l) => l.message), 'warnings').to.have.length(1);
      expect(await tc.net.ip(0, ['route', 'show', '10.244.250.0/24'])).to.equal('');
      expect(await tc.net.ip(0, ['route', 'show', '10.244.251.0/24'])).to.equal('');
      expect((await getDevice(socket(0))).peers.length).to.equal(NODES - 1);
      expect(await allPodsPing(tc)).to.deep.equal([]);
    } finally {
      await tc.admin.delete().key(bad);
      await tc.admin.delete().key(mine);
    }
  });

  it('refuses a config with a bad PSK, naming Backend.PSK, and keeps the running one', async () => {
    await putConfig({ Type: 'wireguard', PSK: 'c2hvcnQ=' });
    try {
      await waitFor('the config refused', () => logLines(tc, 0).some((l) => l.message.includes('Backend.PSK') && l.message.includes('not a base64 WireGuard key')), 10_000);
    } finally {
      await putConfig({ Type: 'wireguard' });
    }
    expect(await allPodsPing(tc)).to.deep.equal([]);
  });

  it('puts back a peer removed from wireguard-go by hand, within the repair interval', async () => {
    const peerKey = (await getDevice(socket(0))).peers.find((p) => p.endpoint === '198.18.0.2:51820')!.publicKey;
    await setDevice(socket(0), [`public_key=${peerKey}`, 'remove=true']);
    expect((await getDevice(socket(0))).peers.map((p) => p.publicKey)).to.not.include(peerKey);
    await waitFor('the peer back in wireguard-go', async () => (await getDevice(socket(0))).peers.some((p) => p.publicKey === peerKey), 10_000);
    expect((await ping(tc.podNs(0), tc.podIp(1), { count: 2, intervalMs: 200, timeoutMs: 5000 })).received).to.be.greaterThan(0);
  });

  it('puts back a route to a peer deleted by hand, within the repair interval', async () => {
    const dst = tc.lease(2).subnet;
    await tc.net.ip(0, ['route', 'del', dst, 'proto', '125']);
    await waitFor('the route back', async () => (await tc.net.ip(0, ['route', 'show', dst, 'proto', '125'])).includes('dev flannel-wg'), 10_000);
    expect((await ping(tc.podNs(0), tc.podIp(2), { count: 2, intervalMs: 200, timeoutMs: 5000 })).received).to.be.greaterThan(0);
  });

  /** SIGKILLs `node`'s wireguard-go; resolves once a new one holds every peer, every pod reaches every pod, and twilld said why. */
  async function killWireguardGo(node: number, said: (l: LogLine) => boolean): Promise<void> {
    const before = wireguardGo(node);
    process.kill(before, 'SIGKILL');
    await waitFor(`a new wireguard-go on node ${node}`, async () => {
      try {
        return wireguardGo(node) !== before && (await getDevice(socket(node))).peers.length === NODES - 1;
      } catch {
        return false;
      }
    }, 15_000);
    await waitFor(`pods on node ${node} reachable again`, async () => (await allPodsPing(tc)).length === 0, 15_000, 500);
    await waitFor('an error line saying wireguard-go exited', () => logLines(tc, node).some((l) => l.level === 'error' && l.message.includes('wireguard-go exited') && said(l)), 5_000);
  }

  it('starts a new wireguard-go when its wireguard-go is killed, and carries traffic again', () => killWireguardGo(2, () => true));

  it('keeps the same wireguard-go and loses no probe at 100 pps across a twilld restart', async () => {
    const before = wireguardGo(1);
    const stream = await startPingStream(tc.podNs(0), tc.podIp(1), 100);
    await stream.waitForReplies(50, 5000);
    expect(await tc.restartAgent(1)).to.equal(0);
    await stream.waitForReplies(stream.received + 100, 10_000);
    const report = await stream.stop();
    console.log(`      twilld restart: longest gap ${Math.round(report.maxGapMs)} ms, ${report.lost} of ${report.sent} probes lost`);
    expect(report.lost, 'probes lost').to.equal(0);
    expect(wireguardGo(1), 'the same wireguard-go, adopted').to.equal(before);
    expect((await netnsPids(tc.nodeNs(1))).includes(before)).to.equal(true);
    expect(logLines(tc, 1).some((l) => l.message.startsWith('wireguard-go adopted'))).to.equal(true);
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${before}/status`, 'utf8'))?.[1] ?? 0);
    console.log(`      wireguard-go: one process per node, ${(rssKb / 1024).toFixed(1)} MB resident after the tests so far`);
  });

  // Adopted, it is not twilld's child: no exit event comes, the reconcile its TUN's removal runs finds it gone.
  it('starts a new wireguard-go, with an error line, when the one it adopted across that restart is killed', () => killWireguardGo(1, (l) => l.how === 'found gone'));

  it('reports the backend, and each peer\'s handshake age and bytes, in /metrics', async () => {
    await allPodsPing(tc);
    const text = await metrics(0);
    expect(text).to.match(/^twill_backend_info\{backend="wireguard",mode="userspace"\} 1/m);
    await waitFor('per-peer WireGuard metrics', async () => {
      const m = await metrics(0);
      return [1, 2].every((peer) => {
        const label = `{peer="${tc.lease(peer).subnet}"}`;
        const age = new RegExp(`^twill_wireguard_peer_handshake_age_seconds${label.replace(/[{}.]/g, '\\$&')} (\\d+)$`, 'm').exec(m);
        const rx = new RegExp(`^twill_wireguard_peer_receive_bytes${label.replace(/[{}.]/g, '\\$&')} (\\d+)$`, 'm').exec(m);
        return age !== null && Number(age[1]) < 180 && rx !== null && Number(rx[1]) > 0;
      });
    }, 15_000, 500);
  });

  it('marks every pair encrypted in twill status (table and --json)', async () => {
    const endpoints = tc.etcd.endpointOn(UNDERLAY.bridgeIp);
    const table = await runTwill(['status', '--etcd-endpoints', endpoints]);
    expect(table).to.contain('wireguard×2; encrypted 2/2');
    const doc = JSON.parse(await runTwill(['status', '--json', '--etcd-endpoints', endpoints])) as { leases: { peers: { backend: string; encrypted: boolean }[] }[] };
    const peers = doc.leases.flatMap((l) => l.peers);
    expect(peers.length).to.equal(NODES * (NODES - 1));
    expect(peers.every((p) => p.backend === 'wireguard' && p.encrypted), JSON.stringify(peers)).to.equal(true);
  });

  it('passes twill diagnose\'s wireguard checks: wireguard-go answers, a recent handshake with each peer', async () => {
    const out = await runTwill(['diagnose', '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp), '--iface', 'eth0', '--subnet-file', tc.subnetFile(0)], tc.nodeNs(0));
    expect(out).to.match(/^OK device: wireguard-go answers on \/run\/twill\/wireguard-\d+\/flannel-wg\.sock: listen port 51820, 2 peer\(s\)/m);
    for (const peer of [1, 2]) expect(out).to.match(new RegExp(`^OK peer: ${tc.lease(peer).subnet.replace('.', '\\.')} \\(198\\.18\\.0\\.${peer + 1}\\), wireguard: handshake \\d+ s ago`, 'm'));
    expect(out.split('\n').filter((l) => l.startsWith('FAIL')), out).to.deep.equal([]);
  });

  /** Every pod pinging every pod at 200 pps while the config moves from `from` to `to`: 0 lost, nothing of `from` left. */
  async function migrates(from: string, to: string, during?: () => Promise<void>): Promise<void> {
    const report = await migrateUnderProbes(tc, from, to, async () => { await putConfig({ Type: to }); }, { during });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) expect(await hasFootprint(tc, i, from), `node ${i}: what ${from} left`).to.deep.equal([]);
  }

  /** The device node `node`'s kernel routes `toNode`'s pod subnet into. */
  const routeDevice = async (node: number, toNode: number) => /\bdev (\S+)/.exec(await tc.net.ip(node, ['route', 'show', tc.lease(toNode).subnet]))?.[1];

  it('migrates wireguard → vxlan with 0 lost probes at 200 pps and nothing of wireguard left', () => migrates('wireguard', 'vxlan'));

  it('migrates vxlan → wireguard with 0 lost probes at 200 pps, moving a peer only once its handshake is done: node 2, its WireGuard port blocked for a while, stays on vxlan meanwhile', async () => {
    const nft = (args: string[]) => tc.net.exec(2, ['nft', ...args]);
    await nft(['add', 'table', 'ip', 'test_wgblock']);
    await nft(['add', 'chain', 'ip', 'test_wgblock', 'in', '{ type filter hook input priority -10 ; }']);
    await nft(['add', 'rule', 'ip', 'test_wgblock', 'in', 'udp', 'dport', '51820', 'drop']);
    await migrates('vxlan', 'wireguard', async () => {
      try {
        await waitFor('node 0 routing node 1 over flannel-wg', async () => (await routeDevice(0, 1)) === 'flannel-wg', 20_000, 100);
        await new Promise((r) => setTimeout(r, 1000));
        expect([await routeDevice(0, 2), await routeDevice(2, 0), await routeDevice(1, 2)], 'routes between node 2 and the others while its handshakes cannot complete').to.deep.equal(['flannel.1', 'flannel.1', 'flannel.1']);
      } finally {
        await nft(['delete', 'table', 'ip', 'test_wgblock']);
      }
    });
  });

  it('hands wireguard-go the same key after the round trip (the key file is reused)', async () => {
    for (let i = 0; i < NODES; i++) {
      expect((await getDevice(socket(i))).privateKey).to.equal(keyToHex(readFileSync(tc.wireguardKeyFile(i), 'utf8')));
    }
  });
});
