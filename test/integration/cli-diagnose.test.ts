import { existsSync } from 'fs';
/**
 * `twill diagnose` run as an operator would: the built CLI, as a real
 * process inside node 0's namespace of a 2-node vxlan cluster running twilld.
 */
import { expect } from 'chai';
import { execFile } from 'child_process';
import * as path from 'path';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { UNDERLAY } from '../harness/cluster';
import { waitFor } from '../harness/wait';
import { type CliRun, linesMatching, runDiagnose } from '../harness/diagnose';
import { describeFrame, FrameParseError, parseFrame } from '../../lib/diagnose/frame';
import { parseEthtoolFeatures } from '../../lib/diagnose/offload';
import { checkSysctls } from '../../lib/diagnose/sysctls';
import { Findings, formatText } from '../../lib/diagnose/findings';

const TWILL = path.join(__dirname, '..', '..', 'cmd', 'twill.js');


/** The line after `line` in the output: the advice of a WARN or FAIL. */
function adviceAfter(stdout: string, line: string): string | undefined {
  const lines = stdout.split('\n');
  const i = lines.indexOf(line);
  return i >= 0 ? lines[i + 1] : undefined;
}


describe('twill diagnose on a node of a 2-node vxlan cluster', function () {
  this.timeout(180_000);
  let tc: TwillCluster;
  let healthy: CliRun;

  const diagnose = (args: readonly string[] = []): Promise<CliRun> => runDiagnose(tc, 0, args);

  async function peerVtepMac(node: number): Promise<string> {
    const value = await tc.admin.get(`${PREFIX}/subnets/${tc.lease(node).subnet.replace('/', '-')}`).string();
    return (JSON.parse(value!) as { BackendData: { VtepMAC: string } }).BackendData.VtepMAC;
  }

  before(async () => {
    tc = await TwillCluster.create({ nodes: 2, config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } } });
    healthy = await diagnose();
  });
  after(async () => {
    await tc?.destroy();
  });

  it('finds nothing to FAIL on a healthy node and exits 0', () => {
    expect(linesMatching(healthy.stdout, /^FAIL /), healthy.stdout).to.deep.equal([]);
    expect(healthy.code, healthy.stdout + healthy.stderr).to.equal(0);
  });

  it('reports kernel support: vxlan OK, tun OK, ipip WARN with the userspace/vxlan advice', () => {
    expect(healthy.stdout).to.match(/^OK kernel: vxlan links can be created$/m);
    expect(healthy.stdout).to.match(/^OK kernel: \/dev\/net\/tun exists and opens/m);
    const [ipip] = linesMatching(healthy.stdout, /^WARN kernel: no ipip support/);
    expect(ipip, healthy.stdout).to.be.a('string');
    expect(adviceAfter(healthy.stdout, ipip)).to.match(/^ {2}→ .*modprobe ipip.*userspace.*vxlan/);
  });

  it('reports a missing /dev/net/tun as FAIL naming the device and how to provide it', async () => {
    // A private mount namespace hides /dev/net from this one process only; the host keeps its device.
    const argv = ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /dev/net && exec "$@"', 'sh',
      'ip', 'netns', 'exec', tc.nodeNs(0), process.execPath, TWILL, 'diagnose',
      '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp), '--iface', 'eth0', '--subnet-file', tc.subnetFile(0)];
    const r = await new Promise<CliRun>((resolve) => {
      execFile('unshare', argv, { timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
      });
    });
    const line = r.stdout.split('\n').find((l) => l.includes('/dev/net/tun'));
    expect(line, r.stdout + r.stderr).to.match(/^(FAIL|WARN) kernel: \/dev\/net\/tun cannot be opened \(ENOENT\)/);
    expect(r.stdout).to.contain('modprobe tun');
    expect(existsSync('/dev/net/tun'), 'the host still has its tun device').to.equal(true);
  });

  it('leaves no temporary twdiag link behind', async () => {
    expect(await tc.net.ip(0, ['-o', 'link', 'show'])).not.to.contain('twdiag');
  });

  it('shows the external interface, the vxlan pod MTU 1450 and that subnet.env agrees', () => {
    expect(healthy.stdout).to.match(/^OK interface: eth0 \(198\.18\.0\.1\/24, MTU 1500\), chosen because --iface eth0; public IP 198\.18\.0\.1$/m);
    expect(healthy.stdout).to.match(/^OK mtu: backend vxlan: pod MTU 1450 \(eth0 MTU 1500 − 50\); on eth0 the other backends would give ipip 1480, udp 1472, host-gw 1500$/m);
    expect(healthy.stdout).to.contain(`OK mtu: ${tc.subnetFile(0)} agrees: FLANNEL_MTU=1450`);
  });

  it('reports ip_forward, rp_filter and the checksum offload state of flannel.1', () => {
    expect(healthy.stdout).to.match(/^OK sysctl: net\.ipv4\.ip_forward = 1/m);
    expect(healthy.stdout).to.match(/^OK sysctl: rp_filter all=\d, eth0=\d .*flannel\.1=\d/m);
    expect(healthy.stdout).to.match(/^OK offload: flannel\.1: rx-checksumming (on|off), tx-checksumming (on|off)/m);
  });

  it("finds this node's lease and the peer's route, neighbour and FDB entry programmed", async () => {
    expect(healthy.stdout).to.contain(`OK lease: this node (198.18.0.1) holds ${tc.lease(0).subnet}, backend vxlan`);
    expect(healthy.stdout).to.match(/^OK device: flannel\.1: vxlan VNI 1, UDP port 8472, up, MTU 1450/m);
    const mac = await peerVtepMac(1);
    expect(healthy.stdout).to.contain(`OK peer: ${tc.lease(1).subnet} (198.18.0.2), vxlan: route, neighbour and FDB entry programmed (VTEP ${mac})`);
  });

  it('reports an FDB entry deleted while twilld is stopped as FAIL with advice, and exits 1', async () => {
    const mac = await peerVtepMac(1);
    await tc.stopAgent(0);
    try {
      await tc.net.exec(0, ['bridge', 'fdb', 'del', mac, 'dev', 'flannel.1', 'dst', '198.18.0.2', 'self']);
      const run = await diagnose();
      const line = `FAIL peer: ${tc.lease(1).subnet} (198.18.0.2): FDB entry ${mac} dst 198.18.0.2 on flannel.1 is missing`;
      expect(run.stdout.split('\n'), run.stdout).to.include(line);
      expect(adviceAfter(run.stdout, line)).to.match(/^ {2}→ is twilld running\? check `journalctl -u twilld`.*--repair-interval/);
      expect(run.code).to.equal(1);
    } finally {
      await tc.startAgent(0);
    }
    await waitFor('twilld to restore the FDB entry', async () =>
      (await tc.net.exec(0, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).stdout.includes(`${mac} dst 198.18.0.2`), 20_000);
  });

  it('--peer <subnet> shows the probe leaving as VXLAN VNI 1 from 198.18.0.1 to 198.18.0.2 and the reply', async () => {
    const subnet = tc.lease(1).subnet;
    const gateway = subnet.replace(/\.0\/\d+$/, '.1');
    const run = await diagnose(['--peer', subnet]);
    expect(run.stdout).to.match(new RegExp(`^OK probe: sent \\d+ ICMP echo request\\(s\\) to ${gateway.replace(/\./g, '\\.')}, the pod gateway of peer`, 'm'));
    const [left] = linesMatching(run.stdout, /^OK probe: \d+ echo request\(s\) left eth0 as VXLAN/);
    expect(left, run.stdout).to.be.a('string');
    expect(left).to.contain('VXLAN VNI 1 (inner ').and.to.contain(` → ${gateway} echo request`);
    expect(left).to.contain('outer 198.18.0.1 → 198.18.0.2 UDP port 8472');
    expect(run.stdout).to.match(/^OK probe: reply received: [1-9]\d* of \d+ echo replies from .* as VXLAN VNI 1 .*outer 198\.18\.0\.2 → 198\.18\.0\.1/m);
    expect(run.code, run.stdout).to.equal(0);
  });

  it('--peer accepts the public IP or an address inside the subnet, and refuses one that matches no lease', async () => {
    const byIp = await diagnose(['--peer', '198.18.0.2', '--json']);
    const parsed = JSON.parse(byIp.stdout) as { probe?: { peer: { subnet: string } } };
    expect(parsed.probe?.peer.subnet).to.equal(tc.lease(1).subnet);
    const none = await diagnose(['--peer', '10.244.250.7']);
    expect(none.stdout).to.match(/^FAIL probe: no lease matches --peer 10\.244\.250\.7$/m);
    expect(none.code).to.equal(1);
    const bad = await diagnose(['--peer', 'node-2']);
    expect(bad.code).to.equal(2);
  });

  it('--json prints the findings as JSON', async () => {
    const run = await diagnose(['--json']);
    const parsed = JSON.parse(run.stdout) as { findings: { level: string; topic: string; what: string; advice?: string }[]; summary: { fail: number } };
    expect(parsed.summary.fail).to.equal(0);
    expect(parsed.findings.find((f) => f.topic === 'kernel' && f.what.startsWith('vxlan'))?.level).to.equal('OK');
    const ipip = parsed.findings.find((f) => f.topic === 'kernel' && f.what.startsWith('no ipip support'));
    expect(ipip?.level).to.equal('WARN');
    expect(ipip?.advice).to.match(/userspace/);
    for (const f of parsed.findings) if (f.level !== 'OK') expect(f.advice, f.what).to.be.a('string');
    expect(run.code).to.equal(0);
  });
});

// The parts of twill diagnose that need no cluster: frame decoding for every
// encapsulation, ethtool output, and the sysctl verdicts.

function ipv4Header(src: string, dst: string, proto: number, payloadLength: number): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payloadLength, 2);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(src.split('.').map(Number)).copy(h, 12);
  Buffer.from(dst.split('.').map(Number)).copy(h, 16);
  return h;
}

function ethernet(dst: string, src: string, payload: Buffer): Buffer {
  const mac = (m: string) => Buffer.from(m.split(':').map((b) => parseInt(b, 16)));
  return Buffer.concat([mac(dst), mac(src), Buffer.from([0x08, 0x00]), payload]);
}

function echoRequest(src: string, dst: string): Buffer {
  const icmp = Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]);
  return Buffer.concat([ipv4Header(src, dst, 1, icmp.length), icmp]);
}

function udp(srcPort: number, dstPort: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(srcPort, 0);
  h.writeUInt16BE(dstPort, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

describe('twill diagnose building blocks', () => {
  const A = '02:00:00:00:00:01';
  const B = '02:00:00:00:00:02';

  it('decodes a VXLAN frame: VNI, inner MACs, inner and outer addresses, ICMP type', () => {
    const vxlanHeader = Buffer.from([0x08, 0, 0, 0, 0, 0, 1, 0]);
    const inner = ethernet('0e:01:c6:12:00:02', '0e:01:c6:12:00:01', echoRequest('10.244.1.0', '10.244.2.1'));
    const payload = udp(40000, 8472, Buffer.concat([vxlanHeader, inner]));
    const f = parseFrame(ethernet(B, A, Buffer.concat([ipv4Header('198.18.0.1', '198.18.0.2', 17, payload.length), payload])))!;
    expect(f.encapsulation).to.deep.equal({ kind: 'vxlan', vni: 1, srcPort: 40000, dstPort: 8472, innerDstMac: '0e:01:c6:12:00:02', innerSrcMac: '0e:01:c6:12:00:01' });
    expect(f.packet).to.include({ src: '10.244.1.0', dst: '10.244.2.1', proto: 1 });
    expect(f.packet!.icmp!.type).to.equal(8);
    expect(describeFrame(f)).to.equal('VXLAN VNI 1 (inner 10.244.1.0 → 10.244.2.1 echo request, inner dst MAC 0e:01:c6:12:00:02), outer 198.18.0.1 → 198.18.0.2 UDP port 8472');
  });

  it('decodes IPIP (IP proto 4) and flannel udp (UDP 8285) frames down to the inner packet', () => {
    const inner = echoRequest('10.244.1.0', '10.244.2.1');
    const ipip = parseFrame(ethernet(B, A, Buffer.concat([ipv4Header('198.18.0.1', '198.18.0.2', 4, inner.length), inner])))!;
    expect(ipip.encapsulation.kind).to.equal('ipip');
    expect(describeFrame(ipip)).to.equal('IP proto 4 (IPIP; inner 10.244.1.0 → 10.244.2.1 echo request), outer 198.18.0.1 → 198.18.0.2');
    const payload = udp(8285, 8285, inner);
    const u = parseFrame(ethernet(B, A, Buffer.concat([ipv4Header('198.18.0.1', '198.18.0.2', 17, payload.length), payload])))!;
    expect(u.encapsulation).to.deep.equal({ kind: 'udp', srcPort: 8285, dstPort: 8285 });
    expect(u.packet).to.include({ src: '10.244.1.0', dst: '10.244.2.1' });
  });

  it('decodes a plain frame, skips non-IPv4 and refuses a truncated one', () => {
    const plain = parseFrame(ethernet(B, A, echoRequest('198.18.0.1', '10.244.2.1')))!;
    expect(plain.encapsulation.kind).to.equal('plain');
    expect(describeFrame(plain)).to.equal(`plain IP 198.18.0.1 → 10.244.2.1 echo request, to MAC ${B}`);
    const arp = Buffer.concat([ethernet(B, A, Buffer.alloc(28)).subarray(0, 12), Buffer.from([0x08, 0x06]), Buffer.alloc(28)]);
    expect(parseFrame(arp)).to.equal(null);
    expect(() => parseFrame(ethernet(B, A, Buffer.alloc(10)))).to.throw(FrameParseError);
  });

  it('reads checksum offload from `ethtool -k` output', () => {
    const f = parseEthtoolFeatures('Features for flannel.1:\nrx-checksumming: on\ntx-checksumming: off\n\ttx-checksum-ip-generic: off [fixed]\n').features;
    expect([...f]).to.deep.equal([['rx-checksumming', true], ['tx-checksumming', false], ['tx-checksum-ip-generic', false]]);
  });

  it('warns about strict rp_filter on the vxlan device, counting `all`, and fails without ip_forward', () => {
    const values: Record<string, string> = {
      'net/ipv4/ip_forward': '0',
      'net/ipv4/conf/all/rp_filter': '1',
      'net/ipv4/conf/eth0/rp_filter': '0',
      'net/ipv4/conf/flannel.1/rp_filter': '0',
    };
    const out = new Findings();
    checkSysctls({ extIface: 'eth0', overlayDevice: 'flannel.1' }, out, (p) => values[p]);
    const [forward, rp] = out.all;
    expect(forward.level).to.equal('FAIL');
    expect(forward.advice).to.contain('sysctl -w net.ipv4.ip_forward=1');
    expect(rp.level).to.equal('WARN');
    expect(rp.what).to.contain('strict reverse-path filtering on flannel.1');
    expect(rp.advice).to.contain('net/ipv4/conf/flannel.1/rp_filter=2');
  });

  it('prints every WARN and FAIL with an indented → advice line', () => {
    const out = new Findings();
    out.ok('kernel', 'vxlan links can be created');
    out.fail('peer', 'FDB entry missing', 'is twilld running?');
    expect(formatText(out.all)).to.equal('OK kernel: vxlan links can be created\nFAIL peer: FDB entry missing\n  → is twilld running?\n1 OK, 0 WARN, 1 FAIL\n');
  });
});
