/**
 * The udp backend and the ipip backend in userspace mode, each on 3 nodes
 * running twilld (namespaces on the harness underlay, one pod per node):
 * what an operator sees — pods reach each other, the wire carries
 * flanneld's udp format or kernel ipip's, unknown destinations get ICMP
 * errors, an iperf3 stream runs without agent errors, metrics count the
 * packets, and a twilld restart costs well under a second of traffic.
 */
import { expect } from 'chai';
import { allPodsPing, httpBody } from '../harness/checks';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { ping, startPingStream } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { CommandError, nsArgv, run } from '../harness/netns';
import { assertSafeTarget } from '../harness/cluster';
import { iperf } from '../harness/iperf';
import { ipAt, ipChecksumValid, ipHeaderLength, withoutTtl } from '../harness/packets';
import { waitFor } from '../harness/wait';
import { execFile } from 'child_process';
import { readFileSync } from 'fs';
import { netnsPids } from '../harness/netns';
import * as path from 'path';
import { UNDERLAY } from '../harness/cluster';

const NODES = 3;
/** A node's /metrics, from its health server on its underlay address. */
const metrics = (node: number) => httpBody(`198.18.0.${node + 1}`, HEALTH_PORT, '/metrics');
const HEALTH_PORT = 9452;
/** In 10.244.0.0/16, held by no node. */
// Leases are taken at random among the first 100 free subnets: .250 is never one of them here.
const NOBODY = '10.244.250.1';
const IPERF_SECONDS = 10;
const TWILL = path.join(__dirname, '..', '..', 'cmd', 'twill.js');

/** `twill diagnose` in node 0: its findings, one per line. */
function diagnose(tc: TwillCluster): Promise<string> {
  const argv = ['netns', 'exec', tc.nodeNs(0), process.execPath, TWILL, 'diagnose',
    '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp), '--iface', 'eth0', '--subnet-file', tc.subnetFile(0)];
  return new Promise((resolve) => execFile('ip', argv, { timeout: 60_000 }, (_err, stdout, stderr) => resolve(stdout + stderr)));
}

interface Variant {
  readonly title: string;
  readonly backend: object;
  readonly device: string;
  readonly protocol: number;
  readonly mtu: number;
  readonly filter: string;
  /** Bytes between the outer IPv4 header and the pod packet. */
  readonly encapsulation: number;
}

const VARIANTS: readonly Variant[] = [
  { title: 'udp backend', backend: { Type: 'udp' }, device: 'flannel0', protocol: 120, mtu: 1472, filter: 'udp port 8285', encapsulation: 8 },
  { title: 'ipip backend in userspace mode', backend: { Type: 'ipip', Mode: 'userspace' }, device: 'flannel.ipip', protocol: 119, mtu: 1480, filter: 'ip proto 4', encapsulation: 0 },
];

interface LogLine {
  level: string;
  message: string;
}

/** The processes of a node's namespace: PID, parent, command, resident memory. */
async function nodeProcesses(tc: TwillCluster, node: number): Promise<{ pid: number; ppid: number; argv: string[]; rssKb: number }[]> {
  const out = [];
  for (const pid of await netnsPids(tc.nodeNs(node))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      out.push({
        pid,
        ppid: Number(/^PPid:\s+(\d+)/m.exec(status)![1]),
        argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'),
        rssKb: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0),
      });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function logLines(tc: TwillCluster, node: number): LogLine[] {
  return tc.logs(node).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

for (const v of VARIANTS) {
  describe(`${v.title}: 3 nodes running twilld`, function () {
    this.timeout(180_000);
    let tc: TwillCluster;

    before(async () => {
      tc = await TwillCluster.create({
        nodes: NODES,
        config: { Network: '10.244.0.0/16', Backend: v.backend },
        agentArgs: ['--repair-interval', '2', '--log-format', 'json', '--healthz-port', String(HEALTH_PORT)],
        agentArgsFor: (node) => ['--healthz-ip', `198.18.0.${node + 1}`],
      });
    });
    after(async () => {
      await tc?.destroy();
    });

    it(`gives pods the MTU external − ${1500 - v.mtu} in subnet.env`, () => {
      for (let i = 0; i < NODES; i++) expect(tc.lease(i).mtu).to.equal(v.mtu);
    });

    it('lets every pod ping every other pod', async () => {
      expect(await allPodsPing(tc)).to.deep.equal([]);
    });

    it(`programs the TUN device ${v.device} with the subnet address and the routes into it`, async () => {
      const link = await tc.net.ip(0, ['-d', 'link', 'show', v.device]);
      expect(link).to.contain(`mtu ${v.mtu}`).and.to.match(/\btun\b/).and.to.match(/state (UP|UNKNOWN)/);
      const addr = await tc.net.ip(0, ['-4', 'addr', 'show', 'dev', v.device]);
      expect(addr).to.contain(`inet ${tc.lease(0).subnet.split('/')[0]}/32`);
      const routes = await tc.net.ip(0, ['route', 'show', 'proto', String(v.protocol)]);
      if (v.device === 'flannel0') {
        expect(routes.trim()).to.equal(`10.244.0.0/16 dev flannel0 scope link`);
      } else {
        for (const peer of [1, 2]) expect(routes).to.contain(`${tc.lease(peer).subnet} dev flannel.ipip scope link`);
      }
    });

    it('publishes the lease flanneld publishes for this backend', async () => {
      const value = JSON.parse((await tc.admin.get(`${PREFIX}/subnets/${tc.lease(0).subnet.replace('/', '-')}`).string())!) as object;
      if (v.device === 'flannel0') expect(value).to.deep.equal({ PublicIP: '198.18.0.1', PublicIPv6: null });
      else expect(value).to.deep.equal({ PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'ipip' });
    });

    it(`carries each pod packet unchanged but for its TTL inside ${v.filter} between the node addresses`, async () => {
      const [onPod, onWire] = await Promise.all([startCapture(tc.podNs(0), 'eth0', 'icmp'), startCapture(tc.nodeNs(0), 'eth0', v.filter)]);
      await ping(tc.podNs(0), tc.podIp(2), { count: 3, intervalMs: 100 });
      const sent = (await onPod.stop()).filter((f) => f.outer.src === tc.podIp(0) && f.outer.dst === tc.podIp(2));
      const wire = (await onWire.stop()).filter((f) => f.outer.src === '198.18.0.1');
      expect(sent.length, 'echo requests leaving pod 0').to.equal(3);
      expect(wire.length, 'encapsulated packets from node 0').to.be.at.least(3);
      for (const f of wire) {
        expect(f.outer.dst).to.equal('198.18.0.3');
        if (v.encapsulation) expect(f.udp).to.deep.equal({ srcPort: 8285, dstPort: 8285 });
        else expect(f.outer.proto).to.equal(4);
        const inner = ipAt(f, ipHeaderLength(ipAt(f)) + v.encapsulation);
        expect(ipChecksumValid(inner), 'inner header checksum').to.equal(true);
        const original = sent.find((s) => ipAt(s).readUInt16BE(4) === inner.readUInt16BE(4));
        expect(original, `pod packet with IP ID ${inner.readUInt16BE(4)}`).to.not.equal(undefined);
        expect(withoutTtl(inner).equals(withoutTtl(ipAt(original!))), 'inner packet byte for byte but the TTL').to.equal(true);
      }
    });

    it('logs the datapath mode once and reports it and the packet counters in /metrics', async () => {
      const mode = v.device === 'flannel0' ? 'udp' : 'ipip';
      if (mode === 'ipip') {
        const said = logLines(tc, 0).filter((l) => l.message.startsWith('ipip backend: userspace mode'));
        expect(said.length, tc.logs(0)).to.equal(1);
      }
      expect(await metrics(0)).to.match(new RegExp(`^twill_backend_info\\{backend="${mode}",mode="userspace"\\} 1`, 'm'));
      await waitFor('datapath counters in /metrics', async () => /^twill_datapath_transmit_packets_total\{backend="[a-z]+"\} [1-9]/m.test(await metrics(0)), 12_000);
    });

    it('passes twill diagnose\'s device and peer checks', async () => {
      const out = await diagnose(tc);
      const lines = out.split('\n').filter((l) => /^(OK|WARN|FAIL) (device|peer)\b/.test(l));
      expect(lines.filter((l) => l.startsWith('FAIL')), out).to.deep.equal([]);
      expect(lines.some((l) => l.startsWith(`OK device: ${v.device}: up, MTU ${v.mtu}`)), out).to.equal(true);
      if (v.device === 'flannel0') expect(out).to.contain('OK peer: route 10.244.0.0/16 dev flannel0 programmed; 2 udp peer(s)');
      else for (const peer of [1, 2]) expect(out).to.contain(`${tc.lease(peer).subnet} (198.18.0.${peer + 1}), ipip: route dev flannel.ipip programmed`);
    });

    it('runs the engine as twill-dataplane, a child of twilld of a few MB, not as a Node.js process', async () => {
      const procs = await nodeProcesses(tc, 0);
      const dataplanes = procs.filter((p) => p.argv[0].endsWith('/twill-dataplane'));
      expect(dataplanes.length, JSON.stringify(procs)).to.equal(1);
      const twilld = procs.find((p) => p.pid === dataplanes[0].ppid);
      expect(twilld?.argv.some((a) => a.endsWith('twilld.js')), 'its parent is twilld').to.equal(true);
      const engineHosts = procs.filter((p) => p.argv[0] === process.execPath && p.argv.some((a) => a.includes('engine-host')));
      expect(engineHosts, 'Node.js engine hosts').to.deep.equal([]);
      console.log(`      ${v.title}: twill-dataplane VmRSS ${(dataplanes[0].rssKb / 1024).toFixed(1)} MB beside twilld's ${(twilld!.rssKb / 1024).toFixed(1)} MB`);
      expect(dataplanes[0].rssKb).to.be.within(1, 16 * 1024);
    });

    it(`carries a ${IPERF_SECONDS} s iperf3 TCP stream between pods with no agent error`, async () => {
      const before = logLines(tc, 0).length + logLines(tc, 1).length;
      const result = await iperf(tc.podNs(1), tc.podNs(0), tc.podIp(1), IPERF_SECONDS);
      console.log(`      ${v.title}: pod-to-pod ${result.gbps.toFixed(2)} Gbit/s, ${result.retransmits} retransmits`);
      expect(result.gbps).to.be.greaterThan(0);
      const errors = [...logLines(tc, 0), ...logLines(tc, 1)].slice(before).filter((l) => l.level === 'error');
      expect(errors).to.deep.equal([]);
    });

    if (v.device === 'flannel0') {
      it('answers a destination inside the network that no node holds with ICMP net unreachable', async () => {
        assertSafeTarget(NOBODY, tc.podNs(0));
        const out = await run(nsArgv(tc.podNs(0), ['ping', '-n', '-c', '1', '-W', '2', NOBODY])).then(
          (r) => expect.fail(`ping to an address nobody holds succeeded: ${r.stdout}`),
          (e: unknown) => (e instanceof CommandError ? e.stdout : Promise.reject(e)),
        );
        expect(out).to.contain(`From ${tc.lease(0).subnet.split('/')[0]} icmp_seq=1 Destination Net Unreachable`);
      });

      it('stops traffic to a node whose lease is removed, and carries it again when the lease returns', async () => {
        const subnet = tc.lease(2).subnet;
        expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
        await tc.admin.delete().key(`${PREFIX}/subnets/${subnet.replace('/', '-')}`);
        await waitFor('pod 0 to lose pod 2', async () => (await ping(tc.podNs(0), tc.podIp(2), { count: 1, timeoutMs: 1000 }).catch(() => ({ received: 0 }))).received === 0, 5000);
        await tc.startAgent(2);
        await waitFor('pod 0 to reach pod 2 again', async () => (await ping(tc.podNs(0), tc.podIp(2), { count: 1, timeoutMs: 1000 }).catch(() => ({ received: 0 }))).received > 0, 10_000);
      });
    }

    it('resumes traffic within 1 s of a twilld restart, adopting the TUN device and the running twill-dataplane: no probe lost at 100 pps', async () => {
      const ifindexBefore = (await tc.net.ip(1, ['-o', 'link', 'show', v.device])).split(':')[0];
      const dataplane = async () => (await nodeProcesses(tc, 1)).filter((p) => p.argv[0].endsWith('/twill-dataplane')).map((p) => p.pid);
      const [before] = await dataplane();
      const stream = await startPingStream(tc.podNs(0), tc.podIp(1), 100);
      await stream.waitForReplies(50, 5000);
      expect(await tc.restartAgent(1)).to.equal(0);
      await stream.waitForReplies(stream.received + 100, 10_000);
      const report = await stream.stop();
      console.log(`      ${v.title}: twilld restart: longest gap ${report.maxGapMs} ms, ${report.lost} of ${report.sent} probes lost`);
      expect(report.maxGapMs).to.be.below(1000);
      expect(report.lost, 'probes lost').to.equal(0);
      expect(await dataplane(), 'the same twill-dataplane, attached by the new twilld').to.deep.equal([before]);
      expect((await tc.net.ip(1, ['-o', 'link', 'show', v.device])).split(':')[0], 'the same device').to.equal(ifindexBefore);
    });
  });
}
