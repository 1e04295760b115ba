/**
 * Dual stack end to end (issue 14, first slice): 3 nodes on a dual-stack
 * underlay (198.18.0.0/24 and the ULA fd00:198:18::/64), host-gw and
 * vxlan and wireguard, pods with an address of each family. The leases in
 * etcd, subnet.env, the routes and vxlan's and wireguard's IPv6 devices are
 * flanneld's; every pod reaches every other over both families. The vxlan
 * cluster also runs --ip-masq and has an outside host on the underlay (no
 * lease, no twilld): the rogue for the IPv6 tunnel guard and the host beyond
 * the cluster network for IPv6 masquerading.
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'fs';
import * as path from 'path';
import { ping } from '../harness/ping';
import { migrateUnderProbes, restartUnderProbes } from '../harness/migration';
import { getDevice, setDevice } from '../../backends/wireguard/uapi';
import { keyToHex, publicKeyOf } from '../../backends/wireguard/keys';
import { startCapture } from '../harness/capture';
import { allPodsPing, httpBody } from '../harness/checks';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { vtepLinkLocal } from '../../backends/vxlan/device';
import { runDiagnose, runTwill } from '../harness/diagnose';
import { sleep, waitFor } from '../harness/wait';
import { addOutsideHost, ipv6EchoSources, type OutsideHost } from '../harness/outside-host';
import { sendUdp, tcpPacket, udp6Packet, vxlanPayload } from '../harness/packets';
import { UNDERLAY, assertSafeTarget } from '../harness/cluster';
import type { Finding } from '../../lib/diagnose/findings';

const NODES = 3;
const ALL = Array.from({ length: NODES }, (_, i) => i);
const REPAIR_S = 2;
const HOST_GW_HEALTH_PORT = 9466;
const CONFIG = {
  Network: '10.244.0.0/16',
  EnableIPv6: true,
  IPv6Network: 'fd00:10:244::/56',
  Backend: { Type: 'host-gw' },
};

describe('dual stack with host-gw: 3 nodes on an IPv4 + IPv6 underlay', function () {
  this.timeout(90_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({
      nodes: NODES, ipv6: true, config: CONFIG,
      agentArgs: ['--repair-interval', String(REPAIR_S), '--healthz-port', String(HOST_GW_HEALTH_PORT)],
      agentArgsFor: (node) => ['--healthz-ip', `198.18.0.${node + 1}`],
    });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('writes each lease as flanneld: key with the IPv6 subnet, value with PublicIPv6', async () => {
    const leases = await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).strings();
    expect(Object.keys(leases)).to.have.length(NODES);
    for (let i = 0; i < NODES; i++) {
      const l = tc.lease(i);
      const key = `${PREFIX}/subnets/${l.subnet.replace('/', '-')}&${l.ipv6Subnet!.replace('/', '-')}`;
      expect(l.ipv6Subnet).to.match(/^fd00:10:244:[0-9a-f]{1,2}::\/64$/);
      expect(leases[key], key).to.equal(`{"PublicIP":"198.18.0.${i + 1}","PublicIPv6":"fd00:198:18::${i + 1}","BackendType":"host-gw"}`);
    }
  });

  it('writes FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET in subnet.env after the IPv4 lines, as flanneld', () => {
    const l = tc.lease(0);
    const first = (cidr: string) => cidr.replace(/::\//, '::1/');
    expect(readFileSync(tc.subnetFile(0), 'utf8')).to.equal(
      `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${l.subnet.replace(/\.0\//, '.1/')}\n` +
      `FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=${first(l.ipv6Subnet!)}\n` +
      'FLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n',
    );
  });

  it("routes each peer's IPv6 subnet via its PublicIPv6 on eth0, with host-gw's protocol", async () => {
    const routes = await tc.net.ip(0, ['-6', 'route', 'show', 'proto', '118']);
    for (const peer of [1, 2]) expect(routes).to.contain(`${tc.lease(peer).ipv6Subnet} via fd00:198:18::${peer + 1} dev eth0`);
  });

  it('lets every pod ping every other pod over IPv4 and over IPv6', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
    expect(await allPodsPing(tc, ALL, 6)).to.deep.equal([]);
  });

  it('counts the routes to peers per family in /metrics, and twill status shows each node\'s IPv6 subnet and address', async () => {
    const metrics = await httpBody('198.18.0.1', HOST_GW_HEALTH_PORT, '/metrics');
    expect(metrics).to.contain('twill_peer_routes{backend="host-gw",family="ipv4"} 2');
    expect(metrics).to.contain('twill_peer_routes{backend="host-gw",family="ipv6"} 2');
    const status = await runTwill(['status', '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp)]);
    for (let i = 0; i < NODES; i++) {
      const row = status.split('\n').find((line) => line.includes(` ${tc.lease(i).subnet} `) || line.startsWith(`${tc.lease(i).subnet} `));
      expect(row, status).to.be.a('string').and.to.contain(tc.lease(i).ipv6Subnet!).and.to.contain(`fd00:198:18::${i + 1}`);
    }
  });

  it('restores an IPv6 route deleted by hand within one repair interval', async () => {
    const subnet = tc.lease(1).ipv6Subnet!;
    await tc.net.ip(0, ['-6', 'route', 'del', subnet]);
    await waitFor('the IPv6 route to come back', async () => (await tc.net.ip(0, ['-6', 'route', 'show', subnet])).includes('via fd00:198:18::2'), REPAIR_S * 1000 + 1000);
  });

  it('keeps both subnets, and every packet of both families at 100 pps between every pod, across a twilld restart', async () => {
    const before = tc.lease(2);
    const report = await restartUnderProbes(tc, 2, 100, [4, 6]);
    expect(report.exitCode).to.equal(0);
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(tc.lease(2)).to.deep.equal(before);
  });
});

describe('dual stack with vxlan: flannel-v6.1 carries IPv6 over the IPv6 underlay', function () {
  this.timeout(90_000);
  const HEALTH_PORT = 9462;
  let tc: TwillCluster;
  let outside: OutsideHost;

  /** The gateway of routes to a node's IPv6 subnet: its IPv6 VTEP MAC's link-local address (EUI-64). */
  const vtepGateway = async (node: number): Promise<string> => {
    const mac = (await tc.net.ip(node, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
    return vtepLinkLocal(mac);
  };

  before(async () => {
    tc = await TwillCluster.create({
      nodes: NODES, ipv6: true, config: { ...CONFIG, Backend: { Type: 'vxlan' } },
      agentArgs: ['--repair-interval', String(REPAIR_S), '--ip-masq', '--iptables-resync', '1', '--healthz-port', String(HEALTH_PORT)],
      agentArgsFor: (node) => ['--healthz-ip', `198.18.0.${node + 1}`], // node i's underlay address (tc is not assigned yet)
    });
    outside = await addOutsideHost(tc, { ipv6: true });
  });
  after(async () => {
    await tc?.destroy();
  });

  it('publishes the IPv6 device\'s VTEP MAC as BackendV6Data beside BackendData, as flanneld', async () => {
    const l = tc.lease(0);
    const value = await tc.admin.get(`${PREFIX}/subnets/${l.subnet.replace('/', '-')}&${l.ipv6Subnet!.replace('/', '-')}`).string();
    const v4mac = (await tc.net.ip(0, ['link', 'show', 'flannel.1'])).match(/link\/ether (\S+)/)![1];
    const v6mac = (await tc.net.ip(0, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
    expect(value).to.equal(`{"PublicIP":"198.18.0.1","PublicIPv6":"fd00:198:18::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${v4mac}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${v6mac}"}}`);
    expect(v6mac).to.not.equal(v4mac);
  });

  it('programs flannel-v6.1: local PublicIPv6, and per peer an IPv6 neighbour, FDB entry and route via its VTEP\'s link-local address', async () => {
    const link = await tc.net.ip(0, ['-d', 'link', 'show', 'flannel-v6.1']);
    expect(link).to.match(/vxlan id 1 local fd00:198:18::1 dev eth0/).and.to.match(/dstport 8472/).and.to.match(/nolearning/);
    const peer = tc.lease(1).ipv6Subnet!;
    const gw = await vtepGateway(1);
    expect(await tc.net.ip(0, ['-6', 'route', 'show', 'proto', '117'])).to.contain(`${peer} via ${gw} dev flannel-v6.1`);
    expect(await tc.net.ip(0, ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1'])).to.contain(`${gw} lladdr`).and.to.contain('PERMANENT');
    expect((await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'])).stdout).to.contain('dst fd00:198:18::2');
    expect(tc.lease(0).mtu, 'pods get the IPv6 device\'s MTU (ext − 70) so full IPv6 packets fit').to.equal(1430);
  });

  it('lets every pod ping every other pod over IPv4 and over IPv6', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
    expect(await allPodsPing(tc, ALL, 6)).to.deep.equal([]);
  });

  it('twill diagnose checks both families: flannel-v6.1, each peer\'s IPv6 entries, the pod MTU, IPv6 forwarding; a missing IPv6 FDB entry is a FAIL', async () => {
    // In two full runs of this file the first diagnose here found etcd silent for its 5 s (FAIL etcd: did not answer in time);
    // not yet explained, and not what this test is about: a diagnose that could not read the cluster is run again.
    let healthy = await runDiagnose(tc, 0);
    for (let retry = 0; retry < 2 && /^FAIL etcd: .*did not answer in time/m.test(healthy.stdout); retry++) healthy = await runDiagnose(tc, 0);
    expect(healthy.code, healthy.stdout).to.equal(0);
    const l = tc.lease(0);
    expect(healthy.stdout).to.contain('OK config: network 10.244.0.0/16, /24 per node; IPv6 network fd00:10:244::/56, /64 per node, backend vxlan');
    expect(healthy.stdout).to.contain(`holds ${l.subnet} and ${l.ipv6Subnet} (public IPv6 fd00:198:18::1), backend vxlan`);
    expect(healthy.stdout).to.contain('OK mtu: backend vxlan: pod MTU 1430 (eth0 MTU 1500 − 70, VXLAN over IPv6)');
    expect(healthy.stdout).to.contain('OK sysctl: net.ipv6.conf.all.forwarding = 1');
    expect(healthy.stdout).to.match(/^OK device: flannel-v6\.1: vxlan VNI 1, UDP port 8472 over IPv6, up, MTU 1430, MAC 1e:/m);
    for (const peer of [1, 2]) {
      expect(healthy.stdout).to.contain(`OK peer: ${tc.lease(peer).subnet} (198.18.0.${peer + 1}), vxlan: route, neighbour and FDB entry programmed (IPv4 and IPv6)`);
    }

    const mac = (await tc.net.ip(1, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
    await tc.stopAgent(0);
    try {
      await tc.net.exec(0, ['bridge', 'fdb', 'del', mac, 'dev', 'flannel-v6.1', 'dst', 'fd00:198:18::2', 'self']);
      const broken = await runDiagnose(tc, 0);
      expect(broken.stdout.split('\n'), broken.stdout).to.include(`FAIL peer: ${tc.lease(1).subnet} (198.18.0.2): FDB entry ${mac} dst fd00:198:18::2 on flannel-v6.1 is missing`);
      expect(broken.code).to.equal(1);
    } finally {
      await tc.startAgent(0);
    }
    await waitFor('twilld to restore the IPv6 FDB entry', async () =>
      (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'])).stdout.includes(`${mac} dst fd00:198:18::2`), 20_000);

    // Named by its IPv6 subnet, the peer is probed over IPv6: its IPv6 pod gateway, through flannel-v6.1 to its PublicIPv6.
    const gateway = tc.lease(2).ipv6Subnet!.replace(/::\/64$/, '::1');
    const byIPv6 = await runDiagnose(tc, 0, ['--peer', tc.lease(2).ipv6Subnet!]);
    expect(byIPv6.stdout).to.contain(`OK probe: sent 3 ICMP echo request(s) to ${gateway}, the pod gateway of peer ${tc.lease(2).ipv6Subnet} (fd00:198:18::3)`);
    expect(byIPv6.stdout).to.match(new RegExp(`^OK probe: \\d+ echo request\\(s\\) left eth0 as VXLAN VNI 1 \\(inner \\S+ → ${gateway} echo request, inner dst MAC 1e:\\S+\\), outer fd00:198:18::1 → fd00:198:18::3 UDP port 8472$`, 'm'));
    expect(byIPv6.stdout).to.match(/^OK probe: reply received: [1-9]/m);
    expect(byIPv6.code, byIPv6.stdout).to.equal(0);
  });

  /** A counter of node 0's IPv6 (or IPv4) guard table. */
  const guardCounter6 = async (name: string, family: 'ip' | 'ip6' = 'ip6'): Promise<number> => {
    const out = await tc.net.exec(0, ['nft', '-j', 'list', 'counter', family, 'twill_guard', name]);
    return (JSON.parse(out.stdout) as { nftables: { counter?: { packets: number } }[] }).nftables.find((i) => i.counter)!.counter!.packets;
  };
  /** How many crafted IPv6 datagrams (UDP to port 9) from inner source `src` reached node 0's pod while `act` ran. */
  const reachingPod0 = async (src: string, act: () => Promise<void>): Promise<number> => {
    // The capture keeps IPv4 frames only and counts the others: with this filter, each one counted is a crafted datagram.
    const cap = await startCapture(tc.podNs(0), 'eth0', src.includes(':') ? `ip6 src ${src} and udp dst port 9` : `ip src ${src} and tcp dst port 9`);
    await act();
    await sleep(500);
    await cap.stop();
    return cap.skipped + cap.captured.length;
  };
  /**
   * Sends a datagram from `src` to node 0's pod as VXLAN from namespace `ns`, as a peer's flannel-v6.1 would:
   * IPv6 (UDP to port 9) over the IPv6 underlay; with `via`, the other family inside the other underlay
   * (IPv6 inside IPv4 to flannel.1, or an IPv4 TCP segment to port 9 inside IPv6 to flannel-v6.1).
   */
  const sendVxlan6 = async (ns: string, src: string, via: 'ipv6' | 'ipv4' = 'ipv6'): Promise<void> => {
    const to = via === 'ipv4' ? tc.net.nodeIp(0) : tc.net.nodeIpv6(0);
    assertSafeTarget(to, ns);
    const dev = via === 'ipv4' ? 'flannel.1' : 'flannel-v6.1';
    const vtep = (await tc.net.ip(0, ['link', 'show', dev])).match(/link\/ether (\S+)/)![1];
    const inner = src.includes(':') ? udp6Packet(src, tc.podIpv6(0), 9, 20) : tcpPacket(src, tc.podIp(0), 20);
    await sendUdp(ns, to, 8472, vxlanPayload(1, vtep, '02:00:00:00:00:99', inner));
  };
  /** An address in node's IPv6 subnet other than its pod's. */
  const inV6Subnet = (node: number) => tc.lease(node).ipv6Subnet!.replace(/::\/64$/, '::7');

  it('guards VXLAN over IPv6 in ip6 twill_guard: a peer\'s packet arrives; a host without a lease and a spoofed inner IPv6 source are dropped and counted', async () => {
    const table = (await tc.net.exec(0, ['nft', 'list', 'table', 'ip6', 'twill_guard'])).stdout;
    expect(table).to.contain('fd00:198:18::2').and.to.contain('fd00:198:18::3').and.to.contain('udp dport 8472');
    const src = inV6Subnet(1);
    expect(await reachingPod0(src, () => sendVxlan6(tc.nodeNs(1), src)), 'from the peer').to.equal(1);
    const [unknown, spoofed] = [await guardCounter6('unknown_vxlan'), await guardCounter6('spoofed_vxlan')];
    expect(await reachingPod0(src, async () => {
      for (let i = 0; i < 3; i++) await sendVxlan6(outside.ns, src);
    }), 'from the host without a lease').to.equal(0);
    expect(await guardCounter6('unknown_vxlan') - unknown).to.equal(3);
    const forged = 'fd00:10:244:c8::9';
    expect(await reachingPod0(forged, () => sendVxlan6(tc.nodeNs(1), forged)), 'spoofed inner source').to.equal(0);
    expect(await guardCounter6('spoofed_vxlan') - spoofed).to.equal(1);
  });

  it('checks the other family inside each underlay: IPv6 inside IPv4 VXLAN and IPv4 inside IPv6 VXLAN only from the peer\'s own subnets', async () => {
    const [v4spoofed, v6spoofed] = [await guardCounter6('spoofed_vxlan', 'ip'), await guardCounter6('spoofed_vxlan')];
    const own6 = inV6Subnet(1);
    const own4 = tc.lease(1).subnet.replace(/\.0\/24$/, '.7');
    // Controls: each path delivers when the inner source is the peer's own, so the drops below are the guard's.
    expect(await reachingPod0(own6, () => sendVxlan6(tc.nodeNs(1), own6, 'ipv4')), 'IPv6 inside IPv4 from the peer\'s subnet').to.equal(1);
    expect(await reachingPod0(own4, () => sendVxlan6(tc.nodeNs(1), own4)), 'IPv4 inside IPv6 from the peer\'s subnet').to.equal(1);
    expect(await reachingPod0('fd00:10:244:c9::9', () => sendVxlan6(tc.nodeNs(1), 'fd00:10:244:c9::9', 'ipv4')), 'spoofed IPv6 inside IPv4').to.equal(0);
    expect(await reachingPod0('10.244.201.9', () => sendVxlan6(tc.nodeNs(1), '10.244.201.9')), 'spoofed IPv4 inside IPv6').to.equal(0);
    expect(await guardCounter6('spoofed_vxlan', 'ip') - v4spoofed).to.equal(1);
    expect(await guardCounter6('spoofed_vxlan') - v6spoofed).to.equal(1);
  });

  it('reports the IPv6 guard\'s drops on /metrics and in twill diagnose, naming the peer that sent a spoofed source', async () => {
    await sleep(REPAIR_S * 1000 + 500);
    const body = await httpBody(tc.net.nodeIp(0), HEALTH_PORT, '/metrics');
    expect(body).to.match(/^twill_underlay_drops_total\{reason="unknown_source",intake="vxlan",family="ipv6"\} 3$/m);
    expect(body).to.match(/^twill_underlay_drops_total\{reason="spoofed_source",intake="vxlan",family="ipv6"\} 2$/m);
    const r = await runDiagnose(tc, 0, ['--json']);
    const guard = (JSON.parse(r.stdout) as { findings: Finding[] }).findings.filter((f) => f.topic === 'guard');
    const ok = guard.filter((f) => f.level === 'OK').map((f) => f.what);
    expect(ok.join('\n'), JSON.stringify(guard)).to.match(/^tunnel guard active: vxlan udp\/8472 take packets only from 2 peer\(s\)/m);
    expect(ok.join('\n')).to.match(/^IPv6 tunnel guard active: vxlan udp\/8472 over IPv6 take packets only from 2 peer\(s\).*dropped so far: 3 \(vxlan 3\) from hosts without a lease, 2 \(vxlan 2\) with a spoofed inner source$/m);
    expect(guard.filter((f) => f.level === 'WARN').map((f) => f.what).join('\n')).to.contain(`peer fd00:198:18::2 (${tc.lease(1).ipv6Subnet}) sent 2 packet(s)`);
    expect(guard.filter((f) => f.level === 'FAIL')).to.deep.equal([]);
  });

  it('--ip-masq: a pod\'s IPv6 packet to a host outside the cluster network leaves with the node\'s IPv6 address; pod to pod keeps the pod\'s', async () => {
    const rules = await waitFor('the IPv6 NAT rules', async () => {
      const r = await tc.net.exec(0, ['nft', 'list', 'table', 'ip6', 'twill']).catch(() => undefined);
      return r?.stdout.includes('masquerade') ? r.stdout : undefined;
    }, 5000);
    expect(rules).to.contain('ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244::/56 return').and.to.contain('ff00::/8');
    const echo = await ipv6EchoSources(tc, outside, 0);
    expect(echo.received).to.be.greaterThan(0);
    expect(echo.fromNode, 'requests from the node address').to.be.at.least(3);
    expect(echo.fromPod, 'requests from the pod address').to.equal(0);
    const pod = await startCapture(tc.podNs(1), 'eth0', `icmp6 and ip6[40] == 128 and ip6 src ${tc.podIpv6(0)}`);
    expect((await ping(tc.podNs(0), tc.podIpv6(1), { count: 3, intervalMs: 100 })).received).to.equal(3);
    await pod.stop();
    expect(pod.skipped, 'pod-to-pod requests with the pod source').to.equal(3);
  });

  it('--ip-masq: puts the IPv6 NAT table back within a resync period after someone deletes it', async () => {
    await tc.net.exec(0, ['nft', 'delete', 'table', 'ip6', 'twill']);
    await waitFor('the IPv6 NAT table to return', async () => (await tc.net.exec(0, ['nft', 'list', 'table', 'ip6', 'twill']).catch(() => undefined))?.stdout.includes('masquerade') ?? false, 4000);
  });

  it('sends the IPv6 overlay as VXLAN over the IPv6 underlay (port 8472)', async () => {
    const cap = await startCapture(tc.nodeNs(0), 'eth0', 'ip6 and udp dst port 8472');
    const r = await ping(tc.podNs(0), tc.podIpv6(2), { count: 3, intervalMs: 100 });
    await cap.stop();
    expect(r.received).to.equal(3);
    // The capture keeps IPv4 frames only and counts the others: with this filter, every one is IPv6 VXLAN.
    expect(cap.skipped).to.be.at.least(3);
    expect(cap.captured).to.deep.equal([]);
  });

  it('restores an IPv6 FDB entry and neighbour deleted by hand within one repair interval', async () => {
    const gw = await vtepGateway(2);
    const fdb = (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'])).stdout.split('\n').find((l) => l.includes('dst fd00:198:18::3'))!;
    const mac = fdb.split(' ')[0];
    await tc.net.exec(0, ['bridge', 'fdb', 'del', mac, 'dev', 'flannel-v6.1', 'dst', 'fd00:198:18::3']);
    await tc.net.ip(0, ['-6', 'neigh', 'del', gw, 'dev', 'flannel-v6.1']);
    await waitFor('the IPv6 FDB entry and neighbour to come back', async () =>
      (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'])).stdout.includes('dst fd00:198:18::3') &&
      (await tc.net.ip(0, ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1'])).includes(`${gw} lladdr`), REPAIR_S * 1000 + 1000);
  });
  it('keeps every packet of both families at 100 pps between every pod through a twilld restart, with the same IPv6 VTEP MAC', async () => {
    const mac = async () => (await tc.net.ip(0, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
    const before = await mac();
    const report = await restartUnderProbes(tc, 0, 100, [4, 6]);
    expect(report.exitCode).to.equal(0);
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(await mac()).to.equal(before);
  });

  for (const [from, to] of [['vxlan', 'host-gw'], ['host-gw', 'vxlan']] as const) {
    it(`migrates live ${from} -> ${to} with every pod probing every pod over IPv4 and IPv6 at 200 pps: 0 lost, nothing of ${from} left in either family`, async () => {
      const report = await migrateUnderProbes(tc, from, to,
        async () => { await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ ...CONFIG, Backend: { Type: to } })); }, { families: [4, 6] });
      expect(report.lost, report.lines.join('\n')).to.equal(0);
      const route = `${tc.lease(2).ipv6Subnet} via ${to === 'host-gw' ? 'fd00:198:18::3 dev eth0' : `${await vtepGateway(2)} dev flannel-v6.1`}`;
      expect(await tc.net.ip(0, ['-6', 'route', 'show', 'proto', to === 'host-gw' ? '118' : '117'])).to.contain(route);
    });
  }

  it('removes the IPv6 NAT table with the IPv4 one when restarted with --ip-masq=false --iptables-forward-rules=false', async () => {
    expect(await tc.stopAgent(0)).to.equal(0);
    await tc.startAgent(0, ['--ip-masq=false', '--iptables-forward-rules=false']);
    await waitFor('both NAT tables to go', async () => !/^table ip6? twill$/m.test((await tc.net.exec(0, ['nft', 'list', 'tables'])).stdout), 5000);
  });
});

describe('dual stack with wireguard: flannel-wg-v6 (Mode separate) carries IPv6 over the IPv6 underlay', function () {
  this.timeout(180_000);
  let tc: TwillCluster;
  /** Each node's wireguard-go directory (both devices' sockets, PID files, logs), by its network namespace's inode. */
  const socket = (node: number, dev: string) => path.join(tc.wireguardRunDir(node), `${dev}.sock`);
  const v6ip = (node: number) => tc.lease(node).ipv6Subnet!.split('/')[0];

  before(async () => {
    tc = await TwillCluster.create({ nodes: NODES, ipv6: true, config: { ...CONFIG, Backend: { Type: 'vxlan' } }, agentArgs: ['--repair-interval', String(REPAIR_S)], start: false });
    for (let i = 0; i < NODES; i++) await tc.startAgent(i);
    for (let i = 0; i < NODES; i++) await tc.addPod(i);
  });
  after(async () => {
    // The cluster kills every process of its namespaces (wireguard-go included) by PID and removes their run directories.
    await tc?.destroy();
  });

  it('migrates vxlan → wireguard with IPv4 and IPv6 probes at 100 pps: 0 lost in either, nothing of vxlan left in either family', async () => {
    const report = await migrateUnderProbes(tc, 'vxlan', 'wireguard', async () => {
      await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ ...CONFIG, Backend: { Type: 'wireguard' } }));
    }, { pps: 100, families: [4, 6] });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) {
      expect((await tc.net.ip(i, ['-6', 'route', 'show', 'proto', '117'])).trim(), `node ${i}: vxlan's IPv6 routes`).to.equal('');
      expect(await tc.net.ip(i, ['-o', 'link', 'show']), `node ${i}: flannel-v6.1`).to.not.include(' flannel-v6.1');
    }
  });

  it('publishes the key file\'s public key as BackendData and BackendV6Data {"PublicKey": ...}, as flanneld', async () => {
    for (let i = 0; i < NODES; i++) {
      const l = tc.lease(i);
      const value = await tc.admin.get(`${PREFIX}/subnets/${l.subnet.replace('/', '-')}&${l.ipv6Subnet!.replace('/', '-')}`).string();
      const pub = publicKeyOf(readFileSync(tc.wireguardKeyFile(i), 'utf8'));
      expect(value).to.equal(`{"PublicIP":"198.18.0.${i + 1}","PublicIPv6":"fd00:198:18::${i + 1}","BackendType":"wireguard",` +
        `"BackendData":{"PublicKey":"${pub}"},"BackendV6Data":{"PublicKey":"${pub}"}}`);
    }
  });

  it('runs flannel-wg-v6 as flanneld: ListenPortV6 51821, the IPv6 subnet\'s /128, MTU ext − 80, a peer per node at [PublicIPv6]:51821 holding its IPv6 subnet, routed there', async () => {
    expect(await tc.net.ip(0, ['link', 'show', 'flannel-wg-v6'])).to.contain('mtu 1420');
    expect(await tc.net.ip(0, ['-6', 'addr', 'show', 'dev', 'flannel-wg-v6'])).to.contain(`inet6 ${v6ip(0)}/128`);
    const dev = await getDevice(socket(0, 'flannel-wg-v6'));
    expect(dev.listenPort).to.equal(51821);
    expect(dev.privateKey).to.equal(keyToHex(readFileSync(tc.wireguardKeyFile(0), 'utf8')));
    expect(dev.peers.map((p) => `${p.endpoint} ${p.allowedIPs.join(',')}`).sort()).to.deep.equal(
      [1, 2].map((n) => `[fd00:198:18::${n + 1}]:51821 ${tc.lease(n).ipv6Subnet}`));
    const routes = await tc.net.ip(0, ['-6', 'route', 'show', 'proto', '125']);
    for (const peer of [1, 2]) expect(routes).to.contain(`${tc.lease(peer).ipv6Subnet} dev flannel-wg-v6`);
    expect((await getDevice(socket(0, 'flannel-wg'))).peers.map((p) => p.allowedIPs.join(',')).sort()).to.deep.equal([tc.lease(1).subnet, tc.lease(2).subnet].sort());
  });

  it('lets every pod ping every other pod over IPv4 and over IPv6, with a handshake on both devices between every pair', async () => {
    expect(await allPodsPing(tc)).to.deep.equal([]);
    expect(await allPodsPing(tc, ALL, 6)).to.deep.equal([]);
    for (let i = 0; i < NODES; i++) {
      for (const dev of ['flannel-wg', 'flannel-wg-v6']) {
        const peers = (await getDevice(socket(i, dev))).peers;
        expect(peers.filter((p) => p.lastHandshakeSec > 0), `node ${i} ${dev}: peers with a handshake`).to.have.length(NODES - 1);
      }
    }
  });

  it('puts nothing on the underlay but WireGuard (UDP 51820 over IPv4, UDP 51821 over IPv6), with no pod address of either family in clear', async () => {
    const wire = await startCapture(tc.nodeNs(0), 'eth0', `(ip and not host ${UNDERLAY.bridgeIp}) or (ip6 and not icmp6)`);
    for (const [from, to] of [[0, 2], [1, 0]]) {
      await ping(tc.podNs(from), tc.podIp(to), { count: 5, intervalMs: 50 });
      await ping(tc.podNs(from), tc.podIpv6(to), { count: 5, intervalMs: 50 });
    }
    await wire.stop();
    const pods = [0, 1, 2].flatMap((i) => [Buffer.from(tc.podIp(i).split('.').map(Number)), ipv6Bytes(tc.podIpv6(i))]);
    const v4 = wire.captured;
    const v6 = wire.otherFrames.map((f) => f.raw);
    expect(v4.length, 'IPv4 frames on node 0\'s eth0').to.be.at.least(20);
    expect(v6.length, 'IPv6 frames on node 0\'s eth0').to.be.at.least(20);
    for (const f of v4) {
      expect(f.outer.proto, 'IP protocol').to.equal(17);
      expect(f.udp, 'UDP ports').to.deep.equal({ srcPort: 51820, dstPort: 51820 });
    }
    const NODE_V6 = [1, 2, 3].map((n) => ipv6Bytes(`fd00:198:18::${n}`));
    for (const raw of v6) {
      expect(raw.readUInt16BE(12), 'ethertype').to.equal(0x86dd);
      expect(raw[20], 'IPv6 next header').to.equal(17);
      expect({ src: raw.readUInt16BE(54), dst: raw.readUInt16BE(56) }, 'UDP ports').to.deep.equal({ src: 51821, dst: 51821 });
      for (const at of [22, 38]) expect(NODE_V6.some((a) => a.equals(raw.subarray(at, at + 16))), 'an underlay address').to.equal(true);
    }
    for (const raw of [...v4.map((f) => f.raw), ...v6]) {
      for (const a of pods) expect(raw.includes(a), `pod address ${a.toString('hex')} in clear`).to.equal(false);
    }
  });

  it("passes twill diagnose's wireguard checks on both devices: each wireguard-go answers, a recent handshake with each peer's IPv4 and IPv6 subnet", async () => {
    const out = await runTwill(['diagnose', '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp), '--iface', 'eth0', '--subnet-file', tc.subnetFile(0)], tc.nodeNs(0));
    expect(out).to.match(/^OK device: wireguard-go answers on \/run\/twill\/wireguard-\d+\/flannel-wg\.sock: listen port 51820, 2 peer\(s\)/m);
    expect(out).to.match(/^OK device: wireguard-go answers on \/run\/twill\/wireguard-\d+\/flannel-wg-v6\.sock: listen port 51821, 2 peer\(s\)/m);
    for (const peer of [1, 2]) {
      expect(out).to.contain(`OK peer: ${tc.lease(peer).subnet} (198.18.0.${peer + 1}), wireguard: handshake`);
      expect(out).to.contain(`OK peer: ${tc.lease(peer).ipv6Subnet} (fd00:198:18::${peer + 1}), flannel-wg-v6: handshake`);
    }
    expect(out.split('\n').filter((l) => l.startsWith('FAIL')), out).to.deep.equal([]);
  });

  it('puts back a peer removed from flannel-wg-v6 by hand, within the repair interval', async () => {
    const sock = socket(0, 'flannel-wg-v6');
    const peerKey = (await getDevice(sock)).peers.find((p) => p.endpoint === '[fd00:198:18::2]:51821')!.publicKey;
    await setDevice(sock, [`public_key=${peerKey}`, 'remove=true']);
    await waitFor('the IPv6 peer back in wireguard-go', async () => (await getDevice(sock)).peers.some((p) => p.publicKey === peerKey), REPAIR_S * 1000 + 3000);
    expect((await ping(tc.podNs(0), tc.podIpv6(1), { count: 2, intervalMs: 200, timeoutMs: 5000 })).received).to.be.greaterThan(0);
  });

  it('migrates back to vxlan with IPv4 and IPv6 probes at 100 pps: 0 lost in either, and flannel-wg-v6, its wireguard-go and its IPv6 routes are gone', async () => {
    const report = await migrateUnderProbes(tc, 'wireguard', 'vxlan', async () => {
      await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ ...CONFIG, Backend: { Type: 'vxlan' } }));
    }, { pps: 100, families: [4, 6] });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    for (let i = 0; i < NODES; i++) {
      expect((await tc.net.ip(i, ['-6', 'route', 'show', 'proto', '125'])).trim(), `node ${i}: wireguard's IPv6 routes`).to.equal('');
      expect(await tc.net.ip(i, ['-o', 'link', 'show']), `node ${i}: flannel-wg-v6`).to.not.include(' flannel-wg-v6');
      expect(existsSync(socket(i, 'flannel-wg-v6')), `node ${i}: flannel-wg-v6's socket`).to.equal(false);
    }
  });

  it('Mode auto: flannel-wg alone carries both families (both addresses, a peer per node with both subnets at PublicIP:51820), migrated onto from vxlan with both families probed: 0 lost; every pod reaches every other over IPv6', async () => {
    const report = await migrateUnderProbes(tc, 'vxlan', 'wireguard', async () => {
      await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ ...CONFIG, Backend: { Type: 'wireguard', Mode: 'auto' } }));
    }, { pps: 50, families: [4, 6] });
    expect(report.lost, report.lines.join('\n')).to.equal(0);
    expect(await tc.net.ip(0, ['-o', 'link', 'show'])).to.not.include(' flannel-wg-v6');
    expect(await tc.net.ip(0, ['addr', 'show', 'dev', 'flannel-wg'])).to.contain(`inet ${tc.lease(0).subnet.split('/')[0]}/32`).and.to.contain(`inet6 ${v6ip(0)}/128`);
    const dev = await getDevice(socket(0, 'flannel-wg'));
    // 198.18.0.0/15 is not RFC 1918, so flanneld's auto picks IPv4 endpoints.
    expect(dev.peers.map((p) => `${p.endpoint} ${[...p.allowedIPs].sort().join(',')}`).sort()).to.deep.equal(
      [1, 2].map((n) => `198.18.0.${n + 1}:51820 ${[tc.lease(n).subnet, tc.lease(n).ipv6Subnet!].sort().join(',')}`));
    const routes = await tc.net.ip(0, ['-6', 'route', 'show', 'proto', '125']);
    for (const peer of [1, 2]) expect(routes).to.contain(`${tc.lease(peer).ipv6Subnet} dev flannel-wg`);
    expect(await allPodsPing(tc, ALL, 6)).to.deep.equal([]);
  });
});

/** The 16 bytes of an IPv6 address. */
function ipv6Bytes(text: string): Buffer {
  const [head, tail] = text.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(all.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}
