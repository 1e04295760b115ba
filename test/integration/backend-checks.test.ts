import { expect } from 'chai';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { UNDERLAY } from '../harness/cluster';
import { TWILLD } from '../harness/daemon';
import { NsProcess } from '../harness/netns';
import { execFile } from 'child_process';
import { existsSync } from 'fs';

/** Runs twilld in node 0 until it exits; returns its exit code and output. */
async function runUntilExit(tc: TwillCluster, extra: string[]): Promise<{ code: number | null; output: string }> {
  const agent: NsProcess = await tc.net.spawn(0, [process.execPath, TWILLD,
    '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp), '--subnet-file', tc.subnetFile(0), '--iface', 'eth0', ...extra]);
  const timer = setTimeout(() => agent.kill('SIGKILL'), 20_000);
  const status = await agent.exited;
  clearTimeout(timer);
  return { code: status.code, output: agent.stdout + agent.stderr };
}

describe('backends that cannot run here refuse clearly and leave nothing behind', function () {
  this.timeout(60_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await TwillCluster.create({ nodes: 1, config: { Network: '10.244.0.0/16', Backend: { Type: 'ipip' } }, start: false });
  });
  after(async () => {
    await tc?.destroy();
  });
  afterEach(async () => {
    await tc.admin.delete().prefix(`${PREFIX}/subnets/`);
  });

  it('ipip with Mode kernel on a kernel without ipip: names the missing kernel support and the fallback, exits non-zero, no device, no lease', async () => {
    await tc.admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"ipip","Mode":"kernel"}}');
    const { code, output } = await runUntilExit(tc, []);
    expect(code).to.not.equal(0);
    expect(output).to.contain('cannot run in kernel mode: this kernel has no ipip support').and.to.contain('Backend.Mode to "userspace"')
      .and.to.not.contain('operation not supported');
    const links = await tc.net.ip(0, ['-o', 'link']);
    expect(links).to.not.contain('flannel.ipip').and.to.not.contain('tunl0');
    expect(await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).keys()).to.deep.equal([]);
  });

  it('host-gw behind a NAT (public IP not on the interface): says so, exits non-zero, no lease', async () => {
    await tc.admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}');
    const { code, output } = await runUntilExit(tc, ['--public-ip', '198.18.0.77']);
    expect(code).to.not.equal(0);
    expect(output).to.contain('public IP 198.18.0.77 is not an address of eth0');
    expect(await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).keys()).to.deep.equal([]);
  });

  it('vxlan with an out-of-range VNI: refused as an invalid config naming Backend.VNI, and nothing is created', async () => {
    await tc.admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}');
    const agent = await tc.net.spawn(0, [process.execPath, TWILLD, '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp),
      '--subnet-file', tc.subnetFile(0), '--iface', 'eth0']);
    try {
      await new Promise((r) => setTimeout(r, 2500));
      expect(agent.stdout + agent.stderr).to.contain('Backend.VNI').and.to.contain('16777216');
      expect(await tc.net.ip(0, ['-o', 'link'])).to.not.contain('flannel.');
    } finally {
      await agent.stop();
    }
  });

  it('udp on a node without /dev/net/tun: names the device and how to provide it, exits non-zero, no lease', async () => {
    await tc.admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}');
    const { code, output } = await runWithoutTun(tc);
    expect(code, output).to.equal(1);
    expect(output).to.contain('the udp backend cannot run: /dev/net/tun is missing').and.to.contain('modprobe tun');
    expect(await tc.net.ip(0, ['-o', 'link'])).to.not.contain('flannel0');
    expect(await tc.admin.getAll().prefix(`${PREFIX}/subnets/`).keys()).to.deep.equal([]);
    expect(existsSync('/dev/net/tun'), 'the host still has its tun device').to.equal(true);
  });

  // Last: it leaves flannel.ipip behind, as a running node would.
  it('ipip with the default Mode auto on this kernel: runs the userspace datapath and says why, once', async () => {
    await tc.admin.put(`${PREFIX}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}');
    const agent = await tc.startAgent(0, ['--log-format', 'json']);
    try {
      const said = (agent.stdout + agent.stderr).split('\n').filter((l) => l.includes('ipip backend: userspace mode (Mode auto; this kernel has no ipip support'));
      expect(said.length, agent.stdout).to.equal(1);
      expect(await tc.net.ip(0, ['-d', 'link', 'show', 'flannel.ipip'])).to.match(/\btun\b/);
      expect(tc.lease(0).mtu).to.equal(1480);
    } finally {
      await tc.stopAgent(0, 'SIGKILL');
    }
  });
});

/** twilld in node 0 with /dev/net hidden by a private mount namespace (the host keeps its device). */
function runWithoutTun(tc: TwillCluster): Promise<{ code: number | null; output: string }> {
  const argv = ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /dev/net && exec "$@"', 'sh',
    'ip', 'netns', 'exec', tc.nodeNs(0), process.execPath, TWILLD,
    '--etcd-endpoints', tc.etcd.endpointOn(UNDERLAY.bridgeIp), '--subnet-file', tc.subnetFile(0), '--iface', 'eth0'];
  return new Promise((resolve) => {
    execFile('unshare', argv, { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, output: stdout + stderr });
    });
  });
}
