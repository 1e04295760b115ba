/**
 * IPv6-only end to end (issue 14): 3 nodes on an IPv6-only underlay (eth0
 * holds only fd00:198:18::<i+1>/64; etcd is reached through a relay, see
 * TwillCluster `ipv6Only`), `EnableIPv4: false`, pods with an IPv6 address
 * only. One cluster for every case: vxlan first, then a live migration to
 * host-gw. The leases are flanneld's `0.0.0.0-0&<IPv6 subnet>` keys, and no
 * node ever gets an IPv4 overlay route, least of all one to 0.0.0.0/0.
 */
import { vtepLinkLocal } from '../../backends/vxlan/device';
import { expect } from 'chai';
import { readFileSync } from 'fs';
import * as path from 'path';
import type { StatusDocument } from '../../lib/cli/status/json';
import { IPNet } from '../../lib/ip';
import { allPodsPing } from '../harness/checks';
import { linesMatching, runDiagnose } from '../harness/diagnose';
import { envWithoutFlanneld, runToEnd } from '../harness/run-to-end';
import { convergedOn } from '../harness/migration';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { startPingStream } from '../harness/ping';
import { addOutsideHost, ipv6EchoSources, type OutsideHost } from '../harness/outside-host';
import { sleep, waitFor } from '../harness/wait';

const TWILL = path.resolve(__dirname, '../../cmd/twill.js');
const NODES = 3;
const CONFIG = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } };
/** The route protocols of the vxlan and host-gw backends (backends/route-protocols.ts). */
const VXLAN_PROTO = '117';
const HOST_GW_PROTO = '118';

describe('IPv6-only cluster: 3 nodes on an IPv6-only underlay, vxlan then host-gw', function () {
  this.timeout(120_000);
  let tc: TwillCluster;
  let outside: OutsideHost;

  before(async () => {
    tc = await TwillCluster.create({ nodes: NODES, ipv6Only: true, config: CONFIG, agentArgs: ['--repair-interval', '2', '--ip-masq'] });
    outside = await addOutsideHost(tc, { ipv6: true });
  });
  after(async () => {
    await tc?.destroy();
  });

  /** IPv4 routes of the overlay on a node (either backend's protocol), and any IPv4 default route: there must be none. */
  async function ipv4Routes(node: number): Promise<string[]> {
    const all = (await tc.net.ip(node, ['-4', 'route', 'show', 'table', 'all'])).split('\n').filter(Boolean);
    return all.filter((r) => /^(default|0\.0\.0\.0\/0)\b/.test(r) || new RegExp(`proto (${VXLAN_PROTO}|${HOST_GW_PROTO}|vxlan|host-gw)\\b`).test(r) || /^10\.244\./.test(r));
  }

  it("writes flanneld's IPv6-only leases: key 0.0.0.0-0&<IPv6 subnet>, PublicIP 0.0.0.0, only BackendV6Data", async () => {
    const leases = await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).strings();
    expect(Object.keys(leases)).to.have.length(NODES);
    for (let i = 0; i < NODES; i++) {
      const v6 = tc.lease(i).ipv6Subnet!;
      expect(v6).to.match(/^fd00:10:244:[0-9a-f]{1,2}::\/64$/);
      const key = `${PREFIX}/subnets/0.0.0.0-0&${v6.replace('/', '-')}`;
      const mac = (await tc.net.ip(i, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
      expect(leases[key], key).to.equal(`{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:198:18::${i + 1}","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"${mac}"}}`);
    }
  });

  it('writes subnet.env without FLANNEL_NETWORK or FLANNEL_SUBNET, as flanneld with EnableIPv4 false', () => {
    const first = tc.lease(0).ipv6Subnet!.replace(/::\//, '::1/');
    expect(readFileSync(tc.subnetFile(0), 'utf8')).to.equal(
      `FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=${first}\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n`,
    );
  });

  it('creates flannel-v6.1 on the IPv6 underlay and no flannel.1, as flanneld', async () => {
    for (let i = 0; i < NODES; i++) {
      const links = await tc.net.ip(i, ['-o', 'link', 'show']);
      expect(links, `node ${i}`).to.not.match(/ flannel\.1[:@]/);
      expect(await tc.net.ip(i, ['-d', 'link', 'show', 'flannel-v6.1'])).to.match(new RegExp(`vxlan id 1 local fd00:198:18::${i + 1} dev eth0`));
    }
    const peer = tc.lease(1).ipv6Subnet!;
    const mac = (await tc.net.ip(1, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
    expect(await tc.net.ip(0, ['-6', 'route', 'show', 'proto', VXLAN_PROTO])).to.contain(`${peer} via ${vtepLinkLocal(mac)} dev flannel-v6.1`);
  });

  it('lets every pod ping every other pod over IPv6 with vxlan, with no IPv4 route installed', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
    for (let i = 0; i < NODES; i++) expect(await ipv4Routes(i), `node ${i}`).to.deep.equal([]);
  });

  it('--ip-masq: a pod reaches an IPv6 host outside the network from the node\'s address, with table ip6 twill alone', async () => {
    const rules = await waitFor('the IPv6 NAT rules', async () => {
      const r = await tc.net.exec(0, ['nft', 'list', 'table', 'ip6', 'twill']).catch(() => undefined);
      return r?.stdout.includes('masquerade') ? r.stdout : undefined;
    }, 5000);
    expect(rules).to.contain('ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244::/56 return');
    expect((await tc.net.exec(0, ['nft', 'list', 'tables'])).stdout).to.not.match(/^table ip twill$/m);
    const echo = await ipv6EchoSources(tc, outside, 0);
    expect(echo.received).to.be.greaterThan(0);
    expect(echo.fromNode, 'requests from the node address').to.be.at.least(3);
    expect(echo.fromPod, 'requests from the pod address').to.equal(0);
  });

  it('twill diagnose on a node finds nothing wrong with vxlan', async () => {
    const r = await runDiagnose(tc, 0);
    expect(linesMatching(r.stdout, /^FAIL/), r.stdout).to.deep.equal([]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(linesMatching(r.stdout, /^OK (config|mtu|lease|device): /).join('\n')).to.include('IPv6 network fd00:10:244::/56, /64 per node, backend vxlan')
      .and.to.include('pod MTU 1430 (eth0 MTU 1500 − 70, VXLAN over IPv6)')
      .and.to.include(`this node (fd00:198:18::1) holds ${tc.lease(0).ipv6Subnet}`)
      .and.to.include('flannel-v6.1: vxlan VNI 1');
    const peers = linesMatching(r.stdout, /^OK peer: /);
    expect(peers.map((l) => l.replace(/ \(VTEP .*$/, '')).sort()).to.deep.equal([1, 2].map((i) => `OK peer: ${tc.lease(i).ipv6Subnet} (fd00:198:18::${i + 1}), vxlan: route, neighbour and FDB entry programmed`).sort());
    // VXLAN over the IPv6 underlay is filtered: only the two peers' PublicIPv6 may send it, and no IPv4 table is needed.
    expect(r.stdout).to.match(/^OK guard: IPv6 tunnel guard active: .*take packets only from 2 peer\(s\)/m);
    expect((await tc.net.exec(0, ['nft', 'list', 'tables'])).stdout).to.not.match(/^table ip twill_guard$/m);
    // --peer probes an IPv6-only peer over IPv6, by its subnet or its PublicIPv6.
    const probe = await runDiagnose(tc, 0, ['--peer', 'fd00:198:18::2']);
    expect(probe.stdout).to.match(/^OK probe: \d+ echo request\(s\) left eth0 as VXLAN VNI 1 .*outer fd00:198:18::1 → fd00:198:18::2 UDP port 8472$/m);
    expect(probe.stdout).to.match(/^OK probe: reply received: [1-9]/m);
    expect(probe.code, probe.stdout).to.equal(0);
  });

  it('keeps its IPv6 subnet, lease key and IPv6 VTEP MAC across a twilld restart, losing no ping', async () => {
    const key = async () => (await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).keys()).filter((k) => k.endsWith(`&${tc.lease(2).ipv6Subnet!.replace('/', '-')}`));
    const mac = async () => (await tc.net.ip(2, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
    const before = { lease: tc.lease(2), keys: await key(), mac: await mac() };
    const stream = await startPingStream(tc.podNs(0), tc.podIp(2), 50);
    await stream.waitForReplies(5);
    expect(await tc.restartAgent(2)).to.equal(0);
    await sleep(500);
    const r = await stream.stop();
    expect(r.lost, JSON.stringify(r)).to.equal(0);
    expect({ lease: tc.lease(2), keys: await key(), mac: await mac() }).to.deep.equal(before);
  });

  it('migrates live to host-gw losing no probe at 100 pps: every pod pings every other over IPv6, routes via PublicIPv6, still no IPv4 route', async () => {
    const stream = await startPingStream(tc.podNs(0), tc.podIp(2), 100);
    try {
      await stream.waitForReplies(5);
      await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ ...CONFIG, Backend: { Type: 'host-gw' } }));
      await waitFor('every node on host-gw with nothing of vxlan left', async () => {
        if (!(await convergedOn(tc, NODES, 'host-gw', 'vxlan'))) return false;
        for (let i = 0; i < NODES; i++) {
          if ((await tc.net.ip(i, ['-o', 'link', 'show'])).includes(' flannel-v6.1')) return false;
        }
        return true;
      }, 60_000, 250);
    } finally {
      const r = await stream.stop();
      console.log(`      vxlan -> host-gw, IPv6 only: ${r.sent} probes, ${r.lost} lost, longest reply gap ${Math.round(r.maxGapMs)} ms`);
      expect(r.lost, JSON.stringify(r)).to.equal(0);
    }
    for (const peer of [1, 2]) {
      expect(await tc.net.ip(0, ['-6', 'route', 'show', 'proto', HOST_GW_PROTO])).to.contain(`${tc.lease(peer).ipv6Subnet} via fd00:198:18::${peer + 1} dev eth0`);
    }
    expect(await allPodsPing(tc)).to.deep.equal([]);
    for (let i = 0; i < NODES; i++) expect(await ipv4Routes(i), `node ${i}`).to.deep.equal([]);
    const leases = await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).keys();
    expect(leases.every((k) => k.startsWith(`${PREFIX}/subnets/0.0.0.0-0&fd00:10:244:`)), leases.join(', ')).to.equal(true);
  });

  it('twill status shows each node by its IPv6 subnet and PublicIPv6, valid, reaching every peer over host-gw', async () => {
    const r = await runToEnd(process.execPath, [TWILL, 'status', '--json', '--etcd-endpoints', tc.etcd.endpoint], { timeoutMs: 20_000, env: envWithoutFlanneld() });
    expect(r.code, r.stderr).to.equal(0);
    const doc = JSON.parse(r.stdout) as StatusDocument;
    const rows = doc.leases.map((l) => ({ subnet: l.subnet, ipv6Subnet: l.ipv6Subnet, publicIPv6: l.publicIPv6, valid: l.valid, via: l.peers?.map((p) => p.backend) }));
    expect(rows).to.deep.equal([0, 1, 2].map((i) => ({
      subnet: null, ipv6Subnet: tc.lease(i).ipv6Subnet, publicIPv6: `fd00:198:18::${i + 1}`, valid: true, via: ['host-gw', 'host-gw'],
    })).sort((a, b) => (IPNet.parse(a.ipv6Subnet!).ip.value < IPNet.parse(b.ipv6Subnet!).ip.value ? -1 : 1)));
  });
});
