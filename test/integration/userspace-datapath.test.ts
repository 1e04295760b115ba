/**
 * The userspace datapath engine (backends/userspace) on its own, without
 * twilld: two nodes (network namespaces on the harness underlay), each
 * running EngineSupervisor with its twill-dataplane program inside the node
 * namespace, TUN flannel0 holding the node's subnet address /32 and the
 * route to 10.244.0.0/16, one pod per node. The same suite runs for the
 * udp wire format (flanneld's) and for userspace ipip (kernel ipip's).
 */
import { expect } from 'chai';
import { readFileSync, statSync } from 'fs';
import { createCluster, assertSafeTarget, UNDERLAY, type Cluster } from '../harness/cluster';
import { startCapture, type CapturedFrame } from '../harness/capture';
import { ping, startPingStream } from '../harness/ping';
import { CommandError, execIn, isAlive, killPid, nsArgv, run, sleep } from '../harness/netns';
import { MemoryLog } from '../harness/memory-log';
import { waitFor } from '../harness/wait';
import { iperf } from '../harness/iperf';
import { ipAt, ipChecksumValid, ipHeaderLength, sendIpip, sendUdp, tcpPacket, withoutTtl } from '../harness/packets';
import {
  DatapathStartError,
  EngineSupervisor,
  userspaceDatapathAvailable,
  type CrashInfo,
  type DatapathCounters,
  type DatapathMode,
  type PeerEntry,
  type RestartInfo,
} from '../../backends/userspace';
import { findDataplane } from '../../backends/userspace/native-engine';
import { dataplaneSocketPath } from '../../backends/userspace/control-protocol';
import { spawn } from 'child_process';
import { createConnection } from 'net';

const EXT_MTU = 1500;
const OVERHEAD: Record<DatapathMode, number> = { udp: 28, ipip: 20 };
const SUBNETS = ['10.244.1.0/24', '10.244.2.0/24'];
const TUN = 'flannel0';
const UDP_PORT = 8285;
/** In 10.244.0.0/16, routed into flannel0, held by no peer. */
const NOBODY = '10.244.99.1';
const IPERF_SECONDS = 10;

/**
 * Sends `inner` from node `ns` to `peerIp` the way a peer's datapath would, as
 * one piece (the underlay fragments it): udp, a datagram to port 8285 (node's
 * dgram); ipip, a raw IP-in-IP packet (python3: node has no raw sockets).
 */
async function sendAsPeer(mode: DatapathMode, ns: string, peerIp: string, inner: Buffer): Promise<void> {
  assertSafeTarget(peerIp, ns);
  if (mode === 'udp') await sendUdp(ns, peerIp, UDP_PORT, inner);
  else await sendIpip(ns, peerIp, inner);
}

/** `ip -j link show` of one device in a node: its ifindex, or null when it does not exist. */
async function ifindexOf(net: Cluster, node: number, dev: string): Promise<number | null> {
  try {
    const [link] = JSON.parse(await net.ip(node, ['-j', 'link', 'show', dev])) as { ifindex: number }[];
    return link.ifindex;
  } catch {
    return null;
  }
}

/** Connects to a Unix socket and hangs up: 'connected', or the error code (ECONNREFUSED: nobody listens). */
function connectOutcome(socketPath: string): Promise<string> {
  return new Promise((resolve) => {
    const sock = createConnection(socketPath);
    sock.once('connect', () => {
      sock.destroy();
      resolve('connected');
    });
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Resident memory of a process in kB (VmRSS of /proc/<pid>/status). */
function vmRssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

for (const mode of ['udp', 'ipip'] as const) {
  describe(`userspace datapath (${mode}): two nodes, one twill-dataplane per node, no twilld`, function () {
    this.timeout(240_000);
    const mtu = EXT_MTU - OVERHEAD[mode];
    let net: Cluster | undefined;
    const dps: (EngineSupervisor | undefined)[] = [];
    const logs = [new MemoryLog(), new MemoryLog()];

    const peersOf = (node: number): PeerEntry[] => [{ subnet: SUBNETS[1 - node], publicIP: net!.nodeIp(1 - node) }];
    const podIp = (node: number) => net!.pod(node).ip;

    async function startNode(node: number): Promise<EngineSupervisor> {
      const dp = await EngineSupervisor.start({
        mode,
        tunName: TUN,
        localIP: net!.nodeIp(node),
        port: UDP_PORT,
        mtu,
        ownSubnet: SUBNETS[node],
        log: logs[node],
        netns: net!.nodeName(node),
        faultInjection: true,
      });
      dps[node] = dp;
      return dp;
    }

    before(async () => {
      const available = userspaceDatapathAvailable();
      if (!available.ok) throw new Error(`cannot run the userspace datapath here: ${available.reason}`);
      // Other test runs on this machine may hold the underlay for a while (iperf3 runs, say).
      net = await createCluster({ nodes: 2, name: `userspace-${mode}`, underlayWaitMs: 120_000 });
      for (let node = 0; node < 2; node++) {
        await startNode(node);
        await net.ip(node, ['addr', 'add', `${SUBNETS[node].split('/')[0]}/32`, 'dev', TUN]);
        await net.ip(node, ['route', 'add', '10.244.0.0/16', 'dev', TUN]);
        await net.addPod(node, SUBNETS[node], { mtu });
      }
      for (let node = 0; node < 2; node++) await dps[node]!.setPeers(peersOf(node));
    });

    afterEach(function () {
      if (this.currentTest?.state !== 'failed') return;
      logs.forEach((log, node) => console.log(`      node ${node} datapath log:\n${log.lines.map((l) => `        ${l.level} ${l.message} ${JSON.stringify(l.meta ?? {})}`).join('\n')}`));
    });

    after(async () => {
      for (const dp of dps) await dp?.destroy().catch((e: Error) => console.log(`      destroy: ${e.message}`));
      await net?.destroy();
    });

    it('creates flannel0 with the MTU asked for, up, and lets the pods ping each other both ways', async () => {
      for (let node = 0; node < 2; node++) {
        const [link] = JSON.parse(await net!.ip(node, ['-j', 'link', 'show', TUN])) as { mtu: number; flags: string[] }[];
        expect(link.mtu).to.equal(mtu);
        expect(link.flags).to.include('UP');
        expect(dps[node]!.info.tunCreated).to.equal(true);
      }
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 3, intervalMs: 100 })).received).to.equal(3);
      expect((await ping(net!.pod(1).ns, podIp(0), { count: 3, intervalMs: 100 })).received).to.equal(3);
      const [c0, c1] = await Promise.all([dps[0]!.counters(), dps[1]!.counters()]);
      expect(c0.txPackets, 'node 0 sent').to.be.at.least(6);
      expect(c1.rxPackets, 'node 1 received').to.be.at.least(6);
    });

    if (mode === 'udp') {
      it('carries each pod packet whole as the payload of one UDP datagram between ports 8285 (flanneld format), its TTL decremented once more as flanneld does', async () => {
        const [onPod, onWire] = await Promise.all([
          startCapture(net!.pod(0).ns, 'eth0', 'icmp'),
          startCapture(net!.nodeName(0), 'eth0', `udp port ${UDP_PORT}`),
        ]);
        await ping(net!.pod(0).ns, podIp(1), { count: 3, intervalMs: 100 });
        const sent = (await onPod.stop()).filter((f) => f.outer.src === podIp(0) && f.outer.dst === podIp(1));
        const wire = (await onWire.stop()).filter((f) => f.outer.src === net!.nodeIp(0));
        expect(sent.length, 'echo requests leaving pod 0').to.equal(3);
        expect(wire.length, 'datagrams from node 0').to.be.at.least(3);
        for (const f of wire) {
          expect(f.outer.dst).to.equal(net!.nodeIp(1));
          expect(f.udp).to.deep.equal({ srcPort: UDP_PORT, dstPort: UDP_PORT });
          const udp = ipAt(f, ipHeaderLength(ipAt(f)));
          const inner = udp.subarray(8, udp.readUInt16BE(4));
          expect(inner.length, 'UDP payload = inner packet length').to.equal(inner.readUInt16BE(2));
          expect(ipChecksumValid(inner), 'inner header checksum').to.equal(true);
          const original = sent.find((s) => ipAt(s).readUInt16BE(4) === inner.readUInt16BE(4))!;
          expect(original, `pod packet with IP ID ${inner.readUInt16BE(4)}`).to.not.equal(undefined);
          // Node 0 forwards pod -> flannel0 (TTL - 1), the engine decrements once more, as flanneld does.
          expect(inner[8]).to.equal(ipAt(original)[8] - 2);
          expect(withoutTtl(inner).equals(withoutTtl(ipAt(original))), 'inner packet otherwise byte for byte').to.equal(true);
        }
      });
    } else {
      it('sends IP protocol 4 between the node addresses with the pod packet unchanged inside (kernel ipip format), DF off, TTL 64', async () => {
        const [onPod, onWire] = await Promise.all([
          startCapture(net!.pod(0).ns, 'eth0', 'icmp'),
          startCapture(net!.nodeName(0), 'eth0', 'ip proto 4'),
        ]);
        await ping(net!.pod(0).ns, podIp(1), { count: 3, intervalMs: 100 });
        const sent = (await onPod.stop()).filter((f) => f.outer.src === podIp(0) && f.outer.dst === podIp(1));
        const wire = (await onWire.stop()).filter((f) => f.outer.src === net!.nodeIp(0));
        expect(sent.length, 'echo requests leaving pod 0').to.equal(3);
        expect(wire.length, 'ipip packets from node 0').to.be.at.least(3);
        for (const f of wire) {
          const outer = ipAt(f);
          expect(f.outer.dst).to.equal(net!.nodeIp(1));
          expect(f.outer.proto).to.equal(4);
          expect(f.outer.ttl).to.equal(64);
          expect(outer.readUInt16BE(6) & 0x4000, 'DF').to.equal(0);
          expect(ipChecksumValid(outer), 'outer header checksum').to.equal(true);
          const inner = ipAt(f, ipHeaderLength(outer));
          expect(outer.readUInt16BE(2), 'outer length').to.equal(ipHeaderLength(outer) + inner.readUInt16BE(2));
          const original = sent.find((s) => ipAt(s).readUInt16BE(4) === inner.readUInt16BE(4))!;
          expect(original, `pod packet with IP ID ${inner.readUInt16BE(4)}`).to.not.equal(undefined);
          // Only node 0's forwarding touched it (TTL - 1), as with kernel ipip.
          expect(inner[8]).to.equal(ipAt(original)[8] - 1);
          expect(ipChecksumValid(inner), 'inner header checksum').to.equal(true);
          expect(withoutTtl(inner).equals(withoutTtl(ipAt(original))), 'inner packet otherwise byte for byte').to.equal(true);
        }
      });

    }

    it(`drops ${mode === 'udp' ? 'datagrams' : 'IP-in-IP packets'} from a sender that is not a peer`, async () => {
      const before = (await dps[1]!.counters()).detail.unknownSource;
      await dps[1]!.setPeers([]);
      try {
        expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100, timeoutMs: 1500 })).received).to.equal(0);
        expect((await dps[1]!.counters()).detail.unknownSource).to.be.at.least(before + 2);
      } finally {
        await dps[1]!.setPeers(peersOf(1));
      }
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 1 })).received).to.equal(1);
    });

    it('drops a packet from a peer whose inner source lies outside that peer\'s subnet, counts it and names the peer once', async () => {
      const before = (await dps[1]!.counters()).detail.spoofedSource;
      const lines = logs[1].lines.length;
      const capture = await startCapture(net!.pod(1).ns, 'eth0', 'tcp dst port 9');
      // Node 0 (10.244.1.0/24) is a peer, but 10.244.9.9 is in nobody's subnet and 10.244.2.7 in node 1's own.
      await sendAsPeer(mode, net!.nodeName(0), net!.nodeIp(1), tcpPacket('10.244.9.9', podIp(1), 100));
      await sendAsPeer(mode, net!.nodeName(0), net!.nodeIp(1), tcpPacket('10.244.2.7', podIp(1), 100));
      // The same packet from node 0's own pod address gets through: the capture proves the path works.
      await sendAsPeer(mode, net!.nodeName(0), net!.nodeIp(1), tcpPacket(podIp(0), podIp(1), 100));
      const frames = await capture.waitForFrames(1, 3000);
      await sleep(300);
      const seen = await capture.stop();
      expect(frames[0].outer.src).to.equal(podIp(0));
      expect(seen.map((f) => f.outer.src)).to.deep.equal([podIp(0)]);
      expect((await dps[1]!.counters()).detail.spoofedSource - before).to.equal(2);
      const said = logs[1].lines.slice(lines).filter((l) => l.message.includes('outside that peer\'s subnet'));
      expect(said.map((l) => l.message).join('\n')).to.include(`from peer ${net!.nodeIp(0)} whose inner source (10.244.9.9)`);
      expect(said, 'one line per peer a minute').to.have.length(1);
    });

    it('sends to the peer whose subnet is the longest match: a /24 wins over a /16 that covers it', async () => {
      const wide: PeerEntry = { subnet: '10.244.0.0/16', publicIP: UNDERLAY.bridgeIp };
      await dps[0]!.setPeers([wide, ...peersOf(0)]);
      try {
        const capture = await startCapture(net!.nodeName(0), 'eth0', mode === 'udp' ? `udp port ${UDP_PORT}` : 'ip proto 4');
        expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received, 'pod 1 via its /24').to.equal(2);
        await ping(net!.pod(0).ns, '10.244.3.1', { count: 1, timeoutMs: 1000 });
        const sent = (await capture.stop()).filter((f) => f.outer.src === net!.nodeIp(0));
        const innerDst = (f: CapturedFrame) => {
          const inner = ipAt(f, ipHeaderLength(ipAt(f)) + (mode === 'udp' ? 8 : 0));
          return [...inner.subarray(16, 20)].join('.');
        };
        const toNode1 = sent.filter((f) => f.outer.dst === net!.nodeIp(1)).map(innerDst);
        const toWide = sent.filter((f) => f.outer.dst === UNDERLAY.bridgeIp).map(innerDst);
        expect(toNode1.length, 'echo requests to node 1').to.be.at.least(2);
        expect(new Set(toNode1), 'what went to node 1').to.deep.equal(new Set([podIp(1)]));
        expect(toWide.length, 'echo requests to the /16 peer').to.be.at.least(1);
        expect(new Set(toWide), 'what went to the /16 peer').to.deep.equal(new Set(['10.244.3.1']));
      } finally {
        await dps[0]!.setPeers(peersOf(0));
      }
    });

    it('takes a table of 5000 peers at once and routes by it', async () => {
      const many: PeerEntry[] = Array.from({ length: 5000 }, (_, i) => ({
        subnet: `10.${100 + (i >> 8)}.${i & 255}.0/24`,
        publicIP: `198.18.${1 + (i >> 8)}.${(i & 255) || 1}`,
      }));
      const t = Date.now();
      await dps[0]!.setPeers([...many, ...peersOf(0)]);
      const ms = Date.now() - t;
      console.log(`      figures: 5001 peers set in ${ms} ms`);
      try {
        expect(ms).to.be.lessThan(1000);
        expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received).to.equal(2);
      } finally {
        await dps[0]!.setPeers(peersOf(0));
      }
    });

    it('forwards a TCP packet longer than the MTU (a train the kernel merged before the socket) as GSO cut at the MTU', async () => {
      const big = tcpPacket(podIp(0), podIp(1), 4000);
      const capture = await startCapture(net!.pod(1).ns, 'eth0', 'tcp dst port 9');
      await sendAsPeer(mode, net!.nodeName(0), net!.nodeIp(1), big);
      const [frame] = await capture.waitForFrames(1, 3000);
      await capture.stop();
      // Written whole (longer than the TUN MTU) the kernel would drop it; as GSO it reaches the pod as one large packet.
      expect(frame.outer.src).to.equal(podIp(0));
      expect(ipAt(frame).readUInt16BE(2)).to.equal(big.length);
      expect(ipAt(frame).subarray(40, big.length).equals(big.subarray(40)), 'payload').to.equal(true);
    });

    it('answers a destination no peer holds with ICMP "Destination Net Unreachable" from the node\'s subnet address', async () => {
      const before = await dps[0]!.counters();
      assertSafeTarget(NOBODY, net!.pod(0).ns);
      const out = await run(nsArgv(net!.pod(0).ns, ['ping', '-n', '-c', '1', '-W', '2', NOBODY])).then(
        () => expect.fail('ping to an address nobody holds succeeded'),
        (e: unknown) => (e instanceof CommandError ? e.stdout : Promise.reject(e)),
      );
      // The kernel drops ICMP errors whose checksums are wrong: ping printing it means both checksums hold.
      expect(out).to.match(new RegExp(`From ${SUBNETS[0].split('/')[0].replace(/\./g, '\\.')} icmp_seq=1 Destination Net Unreachable`));
      const after = await dps[0]!.counters();
      expect(after.noRoute - before.noRoute).to.equal(1);
      expect(after.icmpSent - before.icmpSent).to.equal(1);
    });

    it(`carries a ${IPERF_SECONDS} s iperf3 TCP stream between the pods (figures beside the bare underlay)`, async () => {
      const underlay = await iperf(net!.nodeName(1), net!.nodeName(0), net!.nodeIp(1), IPERF_SECONDS);
      const [b0, b1] = await Promise.all([dps[0]!.counters(), dps[1]!.counters()]);
      // Meanwhile node 0's peer table is replaced every 50 ms: swaps must neither stall nor disturb the stream.
      let swapping = true;
      const swapMs: number[] = [];
      // The programs' resident memory under the stream: the point of running the engine outside Node.js.
      const rssKb = [0, 0];
      const rssSampler = (async () => {
        while (swapping) {
          for (let node = 0; node < 2; node++) rssKb[node] = Math.max(rssKb[node], vmRssKb(dps[node]!.pid!));
          await sleep(250);
        }
      })();
      const swapper = (async () => {
        while (swapping) {
          const t = Date.now();
          await dps[0]!.setPeers(peersOf(0));
          swapMs.push(Date.now() - t);
          await sleep(50);
        }
      })();
      const pods = await iperf(net!.pod(1).ns, net!.pod(0).ns, podIp(1), IPERF_SECONDS).finally(() => (swapping = false));
      await swapper;
      await rssSampler;
      const [c0, c1] = await Promise.all([dps[0]!.counters(), dps[1]!.counters()]);
      console.log(
        `      figures: ${mode} pod-to-pod ${pods.gbps.toFixed(2)} Gbit/s (${pods.retransmits} retransmits), ` +
          `underlay ${underlay.gbps.toFixed(2)} Gbit/s, ratio ${((100 * pods.gbps) / underlay.gbps).toFixed(0)}%; ` +
          `node 0: ${c0.detail.superPackets - b0.detail.superPackets} TSO super-packets cut into ${c0.txPackets - b0.txPackets} packets, ` +
          `${swapMs.length} peer-table swaps (slowest ${Math.max(...swapMs)} ms); ` +
          `node 1: ${c1.detail.datagrams - b1.detail.datagrams} packets in ${c1.detail.tunWrites - b1.detail.tunWrites} TUN writes; ` +
          `twill-dataplane peak VmRSS node 0 ${(rssKb[0] / 1024).toFixed(1)} MB, node 1 ${(rssKb[1] / 1024).toFixed(1)} MB`,
      );
      for (let node = 0; node < 2; node++) expect(rssKb[node], `node ${node} twill-dataplane VmRSS (kB)`).to.be.within(1, 16 * 1024);
      expect(pods.gbps).to.be.greaterThan(0);
      expect(swapMs.length, 'peer-table swaps during the stream').to.be.greaterThan(10);
      // Packets lost inside the engine (IPv6 neighbour discovery on flannel0, dropped as not IPv4, is no loss).
      const lost = (c: DatapathCounters, b: DatapathCounters) =>
        c.drops - b.drops - (c.detail.notIpv4 - b.detail.notIpv4);
      expect(lost(c0, b0), 'packets node 0 lost during the stream').to.equal(0);
      expect(lost(c1, b1), 'packets node 1 lost during the stream').to.equal(0);
    });

    it('restarts twill-dataplane killed with SIGKILL: traffic resumes within 1 s on the same flannel0 (same ifindex)', async () => {
      const ifindexBefore = await ifindexOf(net!, 1, TUN);
      const crashed = new Promise<CrashInfo>((resolve) => dps[1]!.once('crash', resolve));
      const restarted = new Promise<RestartInfo>((resolve) => dps[1]!.once('restart', resolve));
      const stream = await startPingStream(net!.pod(0).ns, podIp(1), 100);
      try {
        await stream.waitForReplies(20, 5000);
        const pid = dps[1]!.pid!;
        process.kill(pid, 'SIGKILL');
        expect((await crashed).signal).to.equal('SIGKILL');
        const info = await restarted;
        expect(info.pid).to.not.equal(pid);
        expect(info.ifindexChanged).to.equal(false);
        await stream.waitForReplies(stream.received + 50, 5000);
      } finally {
        const report = await stream.stop();
        console.log(`      figures: longest gap between replies ${report.maxGapMs.toFixed(0)} ms, ${report.lost} of ${report.sent} lost`);
        expect(report.maxGapMs, 'longest gap between ping replies').to.be.lessThan(1000);
      }
      expect(await ifindexOf(net!, 1, TUN)).to.equal(ifindexBefore);
      expect(dps[1]!.info.tunCreated, 'the restarted engine adopted flannel0').to.equal(false);
      expect(logs[1].messages('error').some((m) => m.includes('died'))).to.equal(true);
    });

    it('hands the running twill-dataplane to the next supervisor (a twilld restart): the same process attached, no ping lost at 100 pps', async () => {
      const pid = dps[1]!.pid!;
      const stream = await startPingStream(net!.pod(0).ns, podIp(1), 100);
      let adopted: EngineSupervisor | undefined;
      try {
        await stream.waitForReplies(20, 5000);
        await dps[1]!.detach(60_000);
        expect(await isAlive(pid), 'the detached program keeps running').to.equal(true);
        await sleep(200); // forwarding on its own meanwhile
        adopted = await startNode(1);
        expect(adopted.pid, 'the same program, attached').to.equal(pid);
        expect(adopted.info.tunCreated).to.equal(false);
        await stream.waitForReplies(stream.received + 50, 5000);
      } finally {
        const report = await stream.stop();
        console.log(`      figures: handover longest gap between replies ${report.maxGapMs.toFixed(0)} ms, ${report.lost} of ${report.sent} lost`);
        expect(report.lost, 'pings lost across the handover').to.equal(0);
      }
      expect(logs[1].messages('info').some((m) => m.includes('adopted'))).to.equal(true);
      await adopted.setPeers(peersOf(1));
    });

    it('replaces, rather than adopts, a detached twill-dataplane that runs another config (here the MTU)', async () => {
      const pid = dps[1]!.pid!;
      await dps[1]!.detach(60_000);
      const other = await EngineSupervisor.start({
        mode, tunName: TUN, localIP: net!.nodeIp(1), port: UDP_PORT, mtu: mtu - 8, ownSubnet: SUBNETS[1], log: logs[1], netns: net!.nodeName(1), peers: peersOf(1),
      });
      dps[1] = other;
      expect(other.pid, 'a new program').to.not.equal(pid);
      expect(await isAlive(pid), 'the old one is gone').to.equal(false);
      expect(other.info.mtu).to.equal(mtu - 8);
      expect(logs[1].messages('info').some((m) => m.includes('another config; replacing it'))).to.equal(true);
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received).to.equal(2);
      await other.stop();
      await startNode(1);
      await dps[1]!.setPeers(peersOf(1));
      expect(dps[1]!.info.mtu).to.equal(mtu);
    });

    it('refuses a second dataplane on the same TUN, through the supervisor and by hand, with a clear message; the first keeps forwarding', async () => {
      const err = await EngineSupervisor.start({
        mode, tunName: TUN, localIP: net!.nodeIp(0), port: UDP_PORT, mtu, ownSubnet: SUBNETS[0], log: new MemoryLog(), netns: net!.nodeName(0),
      }).then(
        (dp) => dp.stop().then(() => expect.fail('a second supervisor started on the same TUN')),
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(DatapathStartError);
      expect((err as DatapathStartError).code).to.equal('EBUSY');
      expect((err as Error).message).to.match(new RegExp(`twill-dataplane \\(pid ${dps[0]!.pid}\\) on ${TUN} is run by another twilld`));

      const byHand = await run(nsArgv(net!.nodeName(0), [findDataplane()!, '--mode', mode, '--tun', TUN, '--local-ip', net!.nodeIp(0), '--gateway', SUBNETS[0].split('/')[0]])).then(
        () => expect.fail('a second twill-dataplane started on the same TUN'),
        (e: unknown) => (e instanceof CommandError ? e : Promise.reject(e)),
      );
      expect(byHand.exitCode).to.equal(1);
      expect(byHand.stderr).to.contain(`refusing to start a second dataplane on ${TUN}: twill-dataplane (pid ${dps[0]!.pid}) already runs it in this network namespace`);
      expect(dps[0]!.running).to.equal(true);
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received).to.equal(2);
    });

    it('survives a segfault in the native engine: only twill-dataplane dies, it is logged and restarted', async () => {
      const restarted = new Promise<RestartInfo>((resolve) => dps[0]!.once('restart', resolve));
      const crashed = new Promise<CrashInfo>((resolve) => dps[0]!.once('crash', resolve));
      await dps[0]!.injectFault();
      expect((await crashed).signal).to.equal('SIGSEGV');
      await restarted;
      await waitFor('pod 0 to reach pod 1 again', async () => (await ping(net!.pod(0).ns, podIp(1), { count: 1, timeoutMs: 1000 })).received === 1, 5000);
    });

    it('recreates flannel0 when someone deletes it: the engine gives up, twill-dataplane exits, a new one makes a new device', async () => {
      const before = await ifindexOf(net!, 1, TUN);
      const crashed = new Promise<CrashInfo>((resolve) => dps[1]!.once('crash', resolve));
      const restarted = new Promise<RestartInfo>((resolve) => dps[1]!.once('restart', resolve));
      await net!.ip(1, ['link', 'delete', TUN]);
      expect((await crashed).reason).to.match(/engine stopped: .*TUN device/);
      const info = await restarted;
      expect(info.ifindexChanged).to.equal(true);
      expect(info.ifindex).to.equal(await ifindexOf(net!, 1, TUN)).and.not.equal(before);
      // What a backend's reconcile does on 'restart' with ifindexChanged: put the address and the route back.
      await net!.ip(1, ['addr', 'add', `${SUBNETS[1].split('/')[0]}/32`, 'dev', TUN]);
      await net!.ip(1, ['route', 'add', '10.244.0.0/16', 'dev', TUN]);
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received).to.equal(2);
    });

    it('stops leaving flannel0 with its address and route in place; a new start adopts it', async () => {
      const ifindexBefore = await ifindexOf(net!, 0, TUN);
      const counted = (await dps[0]!.counters()).txPackets;
      await dps[0]!.stop();
      expect(dps[0]!.running).to.equal(false);
      expect(await ifindexOf(net!, 0, TUN)).to.equal(ifindexBefore);
      expect(await net!.ip(0, ['route', 'show', '10.244.0.0/16'])).to.contain(`dev ${TUN}`);
      expect(await net!.ip(0, ['addr', 'show', 'dev', TUN])).to.contain(`${SUBNETS[0].split('/')[0]}/32`);
      expect((await dps[0]!.counters()).txPackets, 'counters survive stop').to.equal(counted);

      const dp = await startNode(0);
      expect(dp.info.tunCreated).to.equal(false);
      expect(dp.ifindex).to.equal(ifindexBefore);
      await dp.setPeers(peersOf(0));
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received).to.equal(2);
    });

    it('replaces the stale socket a dead twill-dataplane left behind', async () => {
      await dps[0]!.stop();
      const socketPath = dataplaneSocketPath(TUN, net!.nodeName(0));
      // A program started by hand and SIGKILLed: nothing removes its socket.
      const orphan = spawn('ip', ['netns', 'exec', net!.nodeName(0), findDataplane()!, '--mode', mode, '--tun', TUN, '--local-ip', net!.nodeIp(0), '--gateway', SUBNETS[0].split('/')[0], '--port', String(UDP_PORT)], { stdio: ['ignore', 'pipe', 'ignore'] });
      try {
        await waitFor('the hand-started twill-dataplane to be ready', () => statSync(socketPath, { throwIfNoEntry: false })?.isSocket() === true, 5000);
      } finally {
        orphan.kill('SIGKILL');
        await killPid(orphan.pid!);
      }
      expect(await connectOutcome(socketPath), 'the socket left behind').to.equal('ECONNREFUSED');
      const dp = await startNode(0);
      await dp.setPeers(peersOf(0));
      expect(dp.pid).to.not.equal(orphan.pid);
      expect(await connectOutcome(socketPath), 'the new program\'s socket').to.equal('connected');
      expect(logs[0].messages('warn').some((m) => m.includes('removed a stale socket')), 'logged').to.equal(true);
      expect((await ping(net!.pod(0).ns, podIp(1), { count: 2, intervalMs: 100 })).received).to.equal(2);
    });

    it('destroy removes flannel0, also after a stop', async () => {
      await dps[1]!.stop();
      for (let node = 0; node < 2; node++) {
        await dps[node]!.destroy();
        expect(await ifindexOf(net!, node, TUN), `flannel0 on node ${node}`).to.equal(null);
        dps[node] = undefined;
      }
    });
  });
}
