/**
 * The multi-node harness itself: if these fail, no other integration test
 * means anything. Needs root (network namespaces), iproute2 and iputils ping.
 */
import { expect } from 'chai';
import { promises as fs } from 'fs';
import {
  Cluster,
  ClusterCreateError,
  type ClusterOptions,
  FAR_UNDERLAY,
  HARNESS_PREFIX,
  UnderlayInUseError,
  UnsafeAddressError,
  assertSafeTarget,
  cleanupStale,
  createCluster,
} from '../harness/cluster';
import { CaptureError, FrameParseError, parseFrame, startCapture } from '../harness/capture';
import { NsProcess, execIn, ip, isAlive, netnsPids, run, sleep } from '../harness/netns';
import { ping, startPingStream } from '../harness/ping';

/** Namespaces and root-namespace links (by `ip netns list` / `ip link`) whose name carries cluster `id`. */
async function traces(id: string): Promise<{ namespaces: string[]; links: string[] }> {
  const tag = `${HARNESS_PREFIX}${id}`;
  const namespaces = (await ip(['netns', 'list'])).split('\n').filter((l) => l.startsWith(tag));
  const links = (await ip(['-o', 'link', 'show']))
    .split('\n')
    .map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
    .filter((n) => n.startsWith(tag));
  return { namespaces, links };
}

async function rootIpForward(): Promise<string> {
  return (await fs.readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
}

/** A VXLAN packet as flanneld's vxlan backend sends it: node 1 → node 2, VNI 1, pod 10.244.1.2 → 10.244.2.2 ICMP. */
function handBuiltVxlanFrame(): Buffer {
  const outerEth = Buffer.from('02000000000202000000000108 00'.replace(/ /g, ''), 'hex');
  const outerIp = Buffer.from('4500 0086 0000 4000 4011 0000 c6120001 c6120002'.replace(/ /g, ''), 'hex');
  const udp = Buffer.from('d431 2118 0072 0000'.replace(/ /g, ''), 'hex'); // 54321 → 8472
  const vxlan = Buffer.from('08000000 00000100'.replace(/ /g, ''), 'hex'); // I flag, VNI 1
  const innerEth = Buffer.from('c6d2326f8f44 0a0b0c0d0e0f 0800'.replace(/ /g, ''), 'hex');
  const innerIp = Buffer.from('4500 0054 0000 4000 3f01 0000 0af40102 0af40202'.replace(/ /g, ''), 'hex');
  const icmp = Buffer.alloc(64);
  icmp[0] = 8;
  return Buffer.concat([outerEth, outerIp, udp, vxlan, innerEth, innerIp, icmp]);
}

/** A 3-node cluster whose creation fails after node 1 is built: the error it ends with. */
async function creationFailingAfterNode1(opts: Partial<ClusterOptions>, message: string): Promise<ClusterCreateError> {
  const err: unknown = await createCluster({
    nodes: 3,
    ...opts,
    afterNode: (i) => {
      if (i === 1) throw new Error(message);
    },
  }).then(
    async (built) => {
      await built.destroy();
      return new Error('createCluster succeeded despite the failing hook');
    },
    (e: unknown) => e,
  );
  expect(err).to.be.instanceOf(ClusterCreateError);
  return err as ClusterCreateError;
}

describe('harness: frame decoding and address guard', () => {
  it('decodes outer IPv4, UDP and the VXLAN VNI and inner frame of a hand-built packet', () => {
    const f = parseFrame(handBuiltVxlanFrame());
    expect(f).to.not.equal(null);
    expect(f!.outer).to.deep.equal({ src: '198.18.0.1', dst: '198.18.0.2', proto: 17, ttl: 64 });
    expect(f!.udp).to.deep.equal({ srcPort: 54321, dstPort: 8472 });
    expect(f!.vxlan).to.deep.equal({
      vni: 1,
      inner: {
        dstMac: 'c6:d2:32:6f:8f:44',
        srcMac: '0a:0b:0c:0d:0e:0f',
        etherType: 0x0800,
        ip: { src: '10.244.1.2', dst: '10.244.2.2', proto: 1 },
      },
    });
  });

  it('reads a 24-bit VNI and treats only VXLAN ports as VXLAN', () => {
    const frame = handBuiltVxlanFrame();
    frame.writeUIntBE(0xabcdef, 14 + 20 + 8 + 4, 3);
    expect(parseFrame(frame)!.vxlan!.vni).to.equal(0xabcdef);
    expect(parseFrame(frame, [4789])!.vxlan).to.equal(undefined);
  });

  it('returns null for a non-IPv4 frame and throws FrameParseError on a truncated one', () => {
    const arp = Buffer.concat([Buffer.alloc(12), Buffer.from([0x08, 0x06]), Buffer.alloc(28)]);
    expect(parseFrame(arp)).to.equal(null);
    expect(() => parseFrame(handBuiltVxlanFrame().subarray(0, 14 + 20 + 8 + 4))).to.throw(FrameParseError);
  });

  it('refuses traffic to addresses outside the test ranges', () => {
    expect(() => assertSafeTarget('198.19.255.1', 'tw0000-n0')).to.not.throw();
    expect(() => assertSafeTarget('127.0.0.1', null)).to.not.throw();
    expect(() => assertSafeTarget('10.244.3.2', 'tw0000-n0')).to.not.throw();
    expect(() => assertSafeTarget('10.244.3.2', null)).to.throw(UnsafeAddressError);
    expect(() => assertSafeTarget('10.0.0.1', 'tw0000-n0')).to.throw(UnsafeAddressError);
    expect(() => assertSafeTarget('192.168.1.1', 'tw0000-n0')).to.throw(UnsafeAddressError);
    expect(() => assertSafeTarget('not-an-ip', 'tw0000-n0')).to.throw(UnsafeAddressError);
  });

  it('allows IPv6 targets only inside namespaces and only in the ULA range fd00::/8', () => {
    expect(() => assertSafeTarget('fd00:10:244:2::2', 'tw0000-p0')).to.not.throw();
    expect(() => assertSafeTarget('fd00:198:18::2', null)).to.throw(UnsafeAddressError);
    expect(() => assertSafeTarget('2001:db8::1', 'tw0000-p0')).to.throw(UnsafeAddressError);
    expect(() => assertSafeTarget('fe80::1', 'tw0000-p0')).to.throw(UnsafeAddressError);
    expect(() => assertSafeTarget('::1', 'tw0000-p0')).to.throw(UnsafeAddressError);
  });
});

describe('harness: a 3-node cluster', function () {
  let cluster: Cluster | undefined;
  let forwardBefore = '';

  before(async function () {
    if (process.getuid?.() !== 0) this.skip();
    forwardBefore = await rootIpForward();
    cluster = await createCluster({ nodes: 3, name: 'harness-test' });
  });

  after(async () => {
    await cluster?.destroy();
  });

  const c = (): Cluster => {
    if (!cluster) throw new Error('cluster not built');
    return cluster;
  };

  it('names every interface within 15 characters with a 4-hex-digit id', () => {
    expect(c().id).to.match(/^[0-9a-f]{4}$/);
    for (const name of [c().bridge, ...[0, 1, 2].map((i) => c().rootVeth(i))]) expect(name.length).to.be.at.most(15);
    expect(c().nodeNames).to.deep.equal([0, 1, 2].map((i) => `tw${c().id}-n${i}`));
    expect(c().nodeIps).to.deep.equal(['198.18.0.1', '198.18.0.2', '198.18.0.3']);
  });

  it('gives each node eth0 with its address, a default route via the silent gateway, and ip_forward on', async () => {
    for (let i = 0; i < 3; i++) {
      const addr = await c().ip(i, ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(addr).to.include(`${c().nodeIp(i)}/24`);
      expect((await c().ip(i, ['route', 'show', 'default'])).trim()).to.equal('default via 198.18.0.253 dev eth0');
      expect((await c().exec(i, ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim()).to.equal('1');
    }
    expect(await rootIpForward()).to.equal(forwardBefore);
  });

  it('lets every node ping every other node on the underlay', async () => {
    for (let from = 0; from < 3; from++) {
      for (let to = 0; to < 3; to++) {
        if (from === to) continue;
        const r = await ping(c().nodeName(from), c().nodeIp(to), { count: 2, intervalMs: 20 });
        expect(r, `node ${from} → node ${to}`).to.include({ sent: 2, received: 2, lossPct: 0 });
        expect(r.rttAvgMs).to.be.a('number');
      }
    }
  });

  it('reaches node 0 (198.18.0.1) from the root namespace, where etcd will listen', async () => {
    const r = await ping(null, '198.18.0.1', { count: 2, intervalMs: 20 });
    expect(r.received).to.equal(2);
  });

  it('keeps the bridge\'s MAC when a port with a lower MAC joins, so a node that resolved 198.18.0.254 still reaches it', async () => {
    const bridgeMac = async () => (await ip(['-br', 'link', 'show', 'dev', c().bridge])).trim().split(/\s+/)[2];
    const before = await bridgeMac();
    expect((await ping(c().nodeName(0), '198.18.0.254', { count: 1 })).received, 'node 0 → bridge before').to.equal(1);
    const port = `tw${c().id}lowmac`;
    try {
      await ip(['link', 'add', port, 'address', '00:00:00:00:00:01', 'type', 'veth', 'peer', 'name', `tw${c().id}lowpeer`]);
      await ip(['link', 'set', port, 'master', c().bridge, 'up']);
      expect(await bridgeMac()).to.equal(before);
      expect((await ping(c().nodeName(0), '198.18.0.254', { count: 1, timeoutMs: 2000 })).received, 'node 0 → bridge after').to.equal(1);
    } finally {
      await ip(['link', 'del', port]).catch(() => undefined);
    }
  });

  it('lets a pod reach its gateway on cni0, and sets the pod MTU', async () => {
    const pod = await c().addPod(1, '10.244.1.0/24');
    expect(pod).to.include({ ns: `tw${c().id}-p1`, ip: '10.244.1.2', gateway: '10.244.1.1' });
    expect((await ping(pod.ns, pod.gateway, { count: 2, intervalMs: 20 })).received).to.equal(2);
    expect((await c().ip(1, ['route', 'get', '10.244.1.2'])).trim()).to.match(/dev cni0/);
    expect((await c().execPod(1, ['ip', 'route', 'show', 'default'])).stdout.trim()).to.equal('default via 10.244.1.1 dev eth0');

    await c().setPodMtu(1, 1450);
    expect(await c().execPod(1, ['ip', '-o', 'link', 'show', 'eth0']).then((r) => r.stdout)).to.include('mtu 1450');
    expect(await c().ip(1, ['-o', 'link', 'show', pod.hostVeth])).to.include('mtu 1450');
  });

  it('captures ICMP on a node eth0 with the right outer addresses', async () => {
    const cap = await startCapture(c().nodeName(0), 'eth0', 'icmp');
    let frames;
    try {
      await ping(c().nodeName(0), c().nodeIp(2), { count: 3, intervalMs: 20 });
      await cap.waitForFrames(6);
    } finally {
      frames = await cap.stop();
    }
    const requests = frames.filter((f) => f.icmp?.type === 8);
    const replies = frames.filter((f) => f.icmp?.type === 0);
    expect(requests).to.have.length(3);
    expect(replies).to.have.length(3);
    for (const f of requests) expect(f.outer).to.deep.equal({ src: '198.18.0.1', dst: '198.18.0.3', proto: 1, ttl: 64 });
    for (const f of replies) expect(f.outer).to.include({ src: '198.18.0.3', dst: '198.18.0.1', proto: 1 });
  });

  it('decodes real kernel VXLAN frames captured on the root-namespace bridge', async () => {
    // A point-to-point VXLAN between nodes 0 and 1, built by hand for this test only.
    const vx = [0, 1].map((i) => ({ node: i, addr: `10.244.100.${i + 1}` }));
    const cap = await startCapture(null, c().bridge, 'udp port 8472');
    const vtepMacs: string[] = [];
    let frames;
    try {
      for (const { node, addr } of vx) {
        const remote = c().nodeIp(1 - node);
        await c().ip(node, ['link', 'add', 'vxtest', 'type', 'vxlan', 'id', '42', 'local', c().nodeIp(node), 'remote', remote, 'dev', 'eth0', 'dstport', '8472']);
        await c().ip(node, ['addr', 'add', `${addr}/24`, 'dev', 'vxtest']);
        await c().ip(node, ['link', 'set', 'vxtest', 'up']);
        vtepMacs.push((JSON.parse(await c().ip(node, ['-j', 'link', 'show', 'vxtest'])) as { address: string }[])[0].address);
      }
      expect((await ping(c().nodeName(0), '10.244.100.2', { count: 2, intervalMs: 20 })).received).to.equal(2);
      await cap.waitForFrames(4, 5000, (f) => f.vxlan?.inner.ip?.proto === 1);
    } finally {
      frames = await cap.stop();
      for (const { node } of vx) await c().ip(node, ['link', 'del', 'vxtest']).catch(() => '');
    }
    const links0 = JSON.parse(await c().ip(0, ['-j', 'link', 'show'])) as { ifname: string }[];
    expect(links0.map((l) => l.ifname)).to.not.include('vxtest');
    const echo = frames.find((f) => f.vxlan?.inner.ip?.proto === 1 && f.outer.src === '198.18.0.1');
    expect(echo, 'an encapsulated echo request').to.not.equal(undefined);
    expect(echo!.outer).to.include({ src: '198.18.0.1', dst: '198.18.0.2', proto: 17 });
    expect(echo!.udp!.dstPort).to.equal(8472);
    expect(echo!.vxlan!.vni).to.equal(42);
    expect(echo!.vxlan!.inner.ip).to.deep.equal({ src: '10.244.100.1', dst: '10.244.100.2', proto: 1 });
    expect(echo!.vxlan!.inner).to.include({ srcMac: vtepMacs[0], dstMac: vtepMacs[1] });
  });

  it('rejects a capture with a bad filter and leaves no driver running', async () => {
    let err: unknown;
    try {
      await startCapture(c().nodeName(0), 'eth0', 'this is not bpf');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(CaptureError);
    await sleep(50);
    expect(await netnsPids(c().nodeName(0))).to.deep.equal([]);
  });

  it('reports no loss for a steady ping stream', async () => {
    const stream = await startPingStream(c().nodeName(0), c().nodeIp(1), 100);
    await stream.waitForReplies(1);
    await sleep(500);
    const r = await stream.stop();
    expect(r.sent).to.be.greaterThan(10);
    expect(r.lost, `lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);
    expect(r.received).to.equal(r.sent - r.inFlightAtStop);
  });

  it('reports the lost sequence numbers and the gap when the path breaks mid-stream', async () => {
    const stream = await startPingStream(c().nodeName(0), c().nodeIp(2), 100);
    try {
      await stream.waitForReplies(5);
      await c().ip(2, ['link', 'set', 'eth0', 'down']);
      await sleep(300);
    } finally {
      await c().ip(2, ['link', 'set', 'eth0', 'up']);
      // eth0 down dropped the default route; put it back for later tests.
      await c().ip(2, ['route', 'replace', 'default', 'via', '198.18.0.253', 'dev', 'eth0']);
    }
    await stream.waitForReplies(stream.received + 5, 5000);
    const r = await stream.stop();
    expect(r.lost).to.be.greaterThan(5);
    expect(r.lostSeqs).to.have.length(r.lost);
    expect(r.maxGapMs).to.be.greaterThan(250);
  });

  it('refuses to ping an address outside the test ranges', async () => {
    let err: unknown;
    try {
      await ping(c().nodeName(0), '192.0.2.1');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(UnsafeAddressError);
  });

  it('refuses a second cluster while this one holds the underlay', async () => {
    const err = await createCluster({ nodes: 1, name: 'second' }).then(
      async (second) => {
        await second.destroy();
        return new Error('a second cluster was created');
      },
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(UnderlayInUseError);
    expect((await ping(c().nodeName(0), c().nodeIp(1), { count: 1 })).received).to.equal(1);
  });

  it('spawns a long-running process inside a node and reports its PID', async () => {
    const p = await c().spawn(2, ['sleep', '300']);
    expect(await netnsPids(c().nodeName(2))).to.include(p.pid);
    await p.stop();
    expect(await isAlive(p.pid)).to.equal(false);
  });
});

describe('harness: a far node behind a router (farNodes)', function () {
  let cluster: Cluster | undefined;
  let forwardBefore = '';

  before(async function () {
    if (process.getuid?.() !== 0) this.skip();
    forwardBefore = await rootIpForward();
    cluster = await createCluster({ nodes: 3, name: 'far-test', farNodes: [2] });
  });

  after(async () => {
    await cluster?.destroy();
  });

  const c = (): Cluster => {
    if (!cluster) throw new Error('cluster not built');
    return cluster;
  };

  it('puts the far node on 198.18.1.0/24 with its default route via the router, and the near ones on the bridge', async () => {
    expect(c().nodeIps).to.deep.equal(['198.18.0.1', '198.18.0.2', '198.18.1.3']);
    expect(c().router).to.equal(`tw${c().id}-r0`);
    expect(c().routerVeth?.length).to.be.at.most(15);
    expect(() => c().rootVeth(2)).to.throw(/behind the router/);
    expect(await c().ip(2, ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).to.include('198.18.1.3/24');
    expect((await c().ip(2, ['route', 'show', 'default'])).trim()).to.equal(`default via ${FAR_UNDERLAY.routerIp} dev eth0`);
    for (const near of [0, 1]) {
      expect(await c().ip(near, ['route', 'show', FAR_UNDERLAY.network])).to.match(/^198\.18\.1\.0\/24 via 198\.18\.0\.253 dev eth0/);
    }
    expect(await rootIpForward()).to.equal(forwardBefore);
  });

  it('lets the far node reach the near nodes and the root namespace (where etcd listens) through the router, one hop away', async () => {
    const cap = await startCapture(c().nodeName(2), 'eth0', 'icmp');
    let frames;
    try {
      for (const near of [0, 1]) {
        expect(await c().ip(2, ['route', 'get', c().nodeIp(near)]), `route to node ${near}`).to.include(`via ${FAR_UNDERLAY.routerIp} dev eth0`);
        expect((await ping(c().nodeName(2), c().nodeIp(near), { count: 2, intervalMs: 20 })).received, `far → node ${near}`).to.equal(2);
        expect((await ping(c().nodeName(near), c().nodeIp(2), { count: 2, intervalMs: 20 })).received, `node ${near} → far`).to.equal(2);
      }
      expect((await ping(c().nodeName(2), '198.18.0.254', { count: 2, intervalMs: 20 })).received, 'far → root namespace').to.equal(2);
      expect((await ping(null, c().nodeIp(2), { count: 2, intervalMs: 20 })).received, 'root namespace → far').to.equal(2);
      await cap.waitForFrames(4, 5000, (f) => f.outer.src === c().nodeIp(0));
    } finally {
      frames = await cap.stop();
    }
    // Replies node 0 sent with TTL 64 arrive with 63: the router forwarded them.
    const replies = frames.filter((f) => f.icmp?.type === 0 && f.outer.src === c().nodeIp(0));
    expect(replies.length).to.be.greaterThan(0);
    for (const f of replies) expect(f.outer.ttl).to.equal(63);
  });

  it('destroy() removes the router and every other namespace and link, and the root route to the far subnet', async () => {
    const id = c().id;
    expect((await c().leftovers()).namespaces.sort()).to.deep.equal([`tw${id}-n0`, `tw${id}-n1`, `tw${id}-n2`, `tw${id}-r0`]);
    expect((await c().leftovers()).links.sort()).to.deep.equal([c().bridge, `tw${id}n0`, `tw${id}n1`, `tw${id}r0`]);
    expect(await ip(['-4', 'route', 'show', 'exact', FAR_UNDERLAY.network])).to.include(`dev ${c().bridge}`);
    await c().destroy();
    expect(await traces(id)).to.deep.equal({ namespaces: [], links: [] });
    expect((await ip(['-4', 'route', 'show', 'exact', FAR_UNDERLAY.network])).trim()).to.equal('');
    expect(await c().leftovers()).to.deep.equal({ namespaces: [], links: [] });
  });

  it('cleans up a far cluster that fails half way through creation, router included', async () => {
    const err = await creationFailingAfterNode1({ name: 'far-half-built', farNodes: [1] }, 'simulated failure after the far node');
    const failed = err.cluster;
    expect(failed.router).to.equal(`tw${failed.id}-r0`);
    expect(await traces(failed.id)).to.deep.equal({ namespaces: [], links: [] });
    expect((await ip(['-4', 'route', 'show', 'exact', FAR_UNDERLAY.network])).trim()).to.equal('');
  });

  it('refuses far nodes that are not node indexes', async () => {
    const err = await createCluster({ nodes: 2, farNodes: [2] }).then(
      async (built) => {
        await built.destroy();
        return new Error('created');
      },
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RangeError);
  });
});

describe('harness: teardown', function () {
  before(function () {
    if (process.getuid?.() !== 0) this.skip();
  });

  // Whatever a failed test below left behind (the crashed run, the half-built cluster).
  after(async () => {
    if (process.getuid?.() === 0) await cleanupStale();
  });

  it('destroy() removes every namespace, link and process, and can be called twice', async () => {
    const cluster = await createCluster({ nodes: 2, name: 'teardown' });
    let sleeperPid = 0;
    let pingPid = 0;
    try {
      await cluster.addPod(0, '10.244.7.0/24');
      sleeperPid = (await cluster.spawn(1, ['sleep', '300'])).pid;
      // Never stopped by the test: destroy() must find it in the namespace.
      pingPid = (await startPingStream(cluster.nodeName(0), cluster.nodeIp(1), 10)).pid;
      expect((await traces(cluster.id)).namespaces).to.have.length(3);
    } finally {
      await cluster.destroy();
    }
    await cluster.destroy();
    expect(await traces(cluster.id)).to.deep.equal({ namespaces: [], links: [] });
    expect(await isAlive(sleeperPid)).to.equal(false);
    expect(await isAlive(pingPid)).to.equal(false);
  });

  it('cleans up after a failure half way through creation', async () => {
    const err = await creationFailingAfterNode1({ name: 'half-built' }, 'simulated failure after node 1');
    const failed = err.cluster;
    expect(err.message).to.include('simulated failure');
    expect(await traces(failed.id)).to.deep.equal({ namespaces: [], links: [] });
    await failed.destroy(); // again: harmless
    expect(await traces(failed.id)).to.deep.equal({ namespaces: [], links: [] });
  });

  it('cleanupStale() removes the leftovers of a crashed run but not a live cluster', async () => {
    // A separate node process builds a cluster, starts a process in it, and is killed -9.
    const script = [
      `const { createCluster } = require(${JSON.stringify(require.resolve('../harness/cluster'))});`,
      // Node 1 behind a router: its namespace, veths and root route must go too.
      "createCluster({ nodes: 2, name: 'crashy', farNodes: [1] }).then(async (c) => {",
      "  await c.spawn(0, ['sleep', '300']);",
      '  console.log(c.id);',
      '  setInterval(() => {}, 1000);',
      '});',
    ].join('\n');
    const crashy = await NsProcess.spawn(null, [process.execPath, '-e', script]);
    let staleId = '';
    try {
      // Up to 50 s: another test run on this machine may hold the underlay for a while.
      for (let i = 0; i < 500 && !/^[0-9a-f]{4}$/m.test(crashy.stdout) && !crashy.exitedWith; i++) await sleep(100);
      staleId = crashy.stdout.trim();
      expect(staleId).to.match(/^[0-9a-f]{4}$/);
    } finally {
      crashy.kill('SIGKILL');
      await crashy.exited;
    }
    const orphan = (await netnsPids(`tw${staleId}-n0`))[0];
    expect(orphan, 'orphaned sleep in the crashed cluster').to.be.a('number');
    expect((await traces(staleId)).namespaces.some((n) => n.startsWith(`tw${staleId}-r0`)), 'the crashed cluster\'s router').to.equal(true);

    // A namespace with no bridge (no owner record): what a run cut short leaves.
    await run(['ip', 'netns', 'add', 'tw0fff-n0']);
    const report = await cleanupStale();
    expect(report.removed).to.include.members([staleId, '0fff']);
    expect(await traces(staleId)).to.deep.equal({ namespaces: [], links: [] });
    expect((await ip(['-4', 'route', 'show', 'exact', FAR_UNDERLAY.network])).trim()).to.equal('');
    expect(await traces('0fff')).to.deep.equal({ namespaces: [], links: [] });
    expect(await isAlive(orphan)).to.equal(false);

    // A cluster whose owner (this process) is alive is left alone.
    const live = await createCluster({ nodes: 1, name: 'live' });
    try {
      const again = await cleanupStale();
      expect(again.live).to.include(live.id);
      expect((await execIn(live.nodeName(0), ['true'])).stderr).to.equal('');
    } finally {
      await live.destroy();
    }
  });
});
