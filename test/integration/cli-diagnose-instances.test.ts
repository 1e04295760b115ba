/**
 * `twill diagnose` after live settings migrations: it checks the backend
 * instance that actually runs — its device (flannel.2 after a vxlan VNI
 * change, flannel1 for a second udp backend) and its route protocol (121,
 * 124 for the second backend of a type) — not the default names. 3 nodes
 * running twilld; the built CLI runs inside node 0's namespace.
 */
import { expect } from 'chai';
import { TwillCluster, PREFIX } from '../harness/twill-cluster';
import { convergedOnSettings, leases } from '../harness/migration';
import { waitFor } from '../harness/wait';
import { type CliRun, linesMatching, runDiagnose } from '../harness/diagnose';
import { parseNetworkConfig } from '../../lib/config';
import type { LeftOver } from '../../backends/footprint';
import { matchInstance } from '../../lib/diagnose/running-instance';

const NODES = 3;
const NETWORK = '10.244.0.0/16';



function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

describe('twill diagnose follows the backend instance running after a settings migration (3 nodes)', function () {
  this.timeout(600_000);
  let tc: TwillCluster;

  const diagnose = (args: readonly string[] = []): Promise<CliRun> => runDiagnose(tc, 0, args);

  async function putConfig(backend: object): Promise<void> {
    await tc.admin.put(`${PREFIX}/config`).value(JSON.stringify({ Network: NETWORK, Backend: backend }));
  }

  async function settle(what: string, settled: () => Promise<boolean>): Promise<void> {
    await waitFor(what, settled, 90_000, 250).catch((err: Error) => {
      const logs = [0, 1, 2].map((i) => `--- node ${i} ---\n${tc.logs(i).split('\n').slice(-25).join('\n')}`).join('\n');
      throw new Error(`${err.message}\n${logs}`);
    });
  }

  async function routes(node: number, proto: number): Promise<string[]> {
    return (await tc.net.ip(node, ['route', 'show', 'proto', String(proto)])).split('\n').map((l) => l.trim()).filter(Boolean);
  }

  function noFail(run: CliRun): void {
    expect(linesMatching(run.stdout, /^FAIL /), run.stdout + run.stderr).to.deep.equal([]);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
  }

  before(async () => {
    tc = await TwillCluster.create({ nodes: NODES, config: { Network: NETWORK, Backend: { Type: 'vxlan' } }, agentArgs: ['--repair-interval', '2'] });
  });
  after(async () => {
    await tc?.destroy();
  });

  describe('vxlan VNI 1 → VNI 2 and Port 4789 at once', () => {
    let run: CliRun;

    before(async () => {
      await putConfig({ Type: 'vxlan', VNI: 2, Port: 4789 });
      await settle('every node on vxlan VNI 2 port 4789 alone', () => convergedOnSettings(tc, NODES, 'vxlan', { Port: 4789, VNI: 2 }, 'flannel.1'));
      run = await diagnose();
    });

    it('the new instance runs on flannel.2 with the routes of the second vxlan slot (protocol 121)', async () => {
      const link = await tc.net.ip(0, ['-d', 'link', 'show', 'dev', 'flannel.2']);
      expect(link).to.match(/vxlan id 2 /).and.to.match(/dstport 4789/);
      const mine = await routes(0, 121);
      expect(mine).to.have.length(NODES - 1);
      for (const r of mine) expect(r).to.match(/dev flannel\.2 onlink/);
    });

    it('finds nothing to FAIL and checks flannel.2: device, sysctl, offload and every peer', () => {
      noFail(run);
      expect(run.stdout).to.match(/^OK device: flannel\.2: vxlan VNI 2, UDP port 4789, up, MTU 1450/m);
      expect(run.stdout).to.match(/^OK sysctl: rp_filter all=\d, eth0=\d .*flannel\.2=\d/m);
      expect(run.stdout).to.match(/^OK offload: flannel\.2: /m);
      for (const node of [1, 2]) {
        expect(run.stdout).to.match(new RegExp(`^OK peer: ${esc(tc.lease(node).subnet)} \\(198\\.18\\.0\\.${node + 1}\\), vxlan: route, neighbour and FDB entry programmed`, 'm'));
      }
    });

    it('--peer probes over VXLAN VNI 2 to UDP port 4789 and gets the reply', async () => {
      const probe = await diagnose(['--peer', tc.lease(1).subnet]);
      noFail(probe);
      const [left] = linesMatching(probe.stdout, /^OK probe: \d+ echo request\(s\) left eth0 as VXLAN/);
      expect(left, probe.stdout).to.contain('VXLAN VNI 2 (inner ').and.to.contain('outer 198.18.0.1 → 198.18.0.2 UDP port 4789');
    });

    it('reports a stale route of the running instance (protocol 121) left while twilld is stopped', async () => {
      await tc.stopAgent(0);
      try {
        await tc.net.ip(0, ['route', 'add', '10.244.250.0/24', 'via', '10.244.250.0', 'dev', 'flannel.2', 'onlink', 'proto', '121']);
        const stale = await diagnose();
        expect(stale.stdout, stale.stdout).to.match(/^WARN peer: route 10\.244\.250\.0\/24 via 10\.244\.250\.0 dev flannel\.2 matches no lease \(stale\)$/m);
        expect(linesMatching(stale.stdout, /^FAIL /), stale.stdout).to.deep.equal([]);
      } finally {
        await tc.net.ip(0, ['route', 'del', '10.244.250.0/24', 'proto', '121']).catch(() => undefined);
        await tc.startAgent(0);
      }
    });
  });

  describe('udp, then udp Port 8300: a second udp backend on flannel1 (protocol 124)', () => {
    let run: CliRun;

    before(async () => {
      await putConfig({ Type: 'udp' });
      await settle('every node on udp alone', () => convergedOnSettings(tc, NODES, 'udp', undefined, 'flannel.2'));
      await putConfig({ Type: 'udp', Port: 8300 });
      await settle('every node on udp Port 8300 alone', () => convergedOnSettings(tc, NODES, 'udp', { Port: 8300 }, 'flannel0'));
      run = await diagnose();
    });

    it('flannel1 alone holds the network route, by protocol 124', async () => {
      expect(await routes(0, 124)).to.deep.equal([`${NETWORK} dev flannel1 scope link`]);
      expect(await tc.net.ip(0, ['-d', 'link', 'show', 'dev', 'flannel1'])).to.contain('alias twill udp Port=8300');
    });

    it('finds nothing to FAIL and checks flannel1 and its network route', () => {
      noFail(run);
      expect(run.stdout).to.match(/^OK device: flannel1: up, MTU 1472/m);
      expect(run.stdout).to.match(/^OK sysctl: rp_filter .*flannel1=\d/m);
      expect(run.stdout).to.match(new RegExp(`^OK peer: route ${esc(NETWORK)} dev flannel1 programmed; 2 udp peer\\(s\\)`, 'm'));
      expect(run.stdout).not.to.contain('flannel0');
    });

    it('--peer expects and sees the probe leave as UDP 8300', async () => {
      const probe = await diagnose(['--peer', tc.lease(2).subnet]);
      noFail(probe);
      expect(probe.stdout).to.match(/^OK probe: \d+ echo request\(s\) left eth0 as UDP 8300 /m);
    });

    it('while two udp backends run (node 2 stopped mid Port 8300 → 8285), accepts the per-peer routes of both TUNs', async () => {
      expect(await tc.stopAgent(2, 'SIGTERM')).to.equal(0);
      try {
        await putConfig({ Type: 'udp' });
        const [l1, l2] = [tc.lease(1).subnet, tc.lease(2).subnet];
        await settle('node 0 to route node 1 by flannel0 and node 2 by flannel1', async () =>
          (await routes(0, 120)).some((r) => r.startsWith(`${l1} dev flannel0`)) &&
          (await routes(0, 124)).some((r) => r.startsWith(`${l2} dev flannel1`)) &&
          !(await routes(0, 124)).some((r) => r.startsWith(NETWORK)));
        const mid = await diagnose();
        noFail(mid);
        expect(mid.stdout).to.match(/^OK device: flannel0: up, MTU 1472/m);
        expect(mid.stdout).to.match(new RegExp(`^OK peer: ${esc(l1)} \\(198\\.18\\.0\\.2\\), udp: route dev flannel0 programmed`, 'm'));
        // Each instance is checked for the peers it carries: node 2 still on Port 8300, over flannel1.
        expect(mid.stdout).to.match(new RegExp(`^OK peer: ${esc(l2)} \\(198\\.18\\.0\\.3\\), udp\\{Port=8300\\}: route dev flannel1 programmed`, 'm'));
      } finally {
        await tc.startAgent(2);
      }
      await settle('every node on udp Port 8285 alone', () => convergedOnSettings(tc, NODES, 'udp', undefined, 'flannel1'));
      const after = await diagnose();
      noFail(after);
      expect(after.stdout).to.match(/^OK device: flannel0: up, MTU 1472/m);
      expect(after.stdout).to.match(new RegExp(`^OK peer: route ${esc(NETWORK)} dev flannel0 programmed`, 'm'));
      expect([...(await leases(tc)).values()].every((l) => l.TwillBackends === undefined)).to.equal(true);
    });
  });
});

describe('twill diagnose: which running instance it checks (matchInstance)', () => {
  const config = (backend: Record<string, unknown>) => parseNetworkConfig(JSON.stringify({ Network: NETWORK, Backend: backend }), ['vxlan', 'udp', 'host-gw', 'ipip', 'alloc']);

  it('picks the left-over of the configured instance key: its device and its slot\'s route protocol', () => {
    const found: LeftOver[] = [
      { config: { type: 'vxlan', settings: { VNI: 1, Port: 8472, GBP: false, Learning: false } }, slot: 0, device: 'flannel.1' },
      { config: { type: 'vxlan', settings: { VNI: 2, Port: 4789, GBP: false, Learning: false } }, slot: 1, device: 'flannel.2' },
    ];
    expect(matchInstance('vxlan', config({ Type: 'vxlan', VNI: 2, Port: 4789 }), found)).to.deep.equal({ type: 'vxlan', device: 'flannel.2', protocol: 121, slot: 1, found: true });
    expect(matchInstance('vxlan', config({ Type: 'vxlan' }), found)).to.deep.equal({ type: 'vxlan', device: 'flannel.1', protocol: 117, slot: 0, found: true });
    const udp: LeftOver[] = [{ config: { type: 'udp', settings: { Port: 8300 } }, slot: 1, device: 'flannel1' }];
    expect(matchInstance('udp', config({ Type: 'udp', Port: 8300 }), udp)).to.include({ device: 'flannel1', protocol: 124 });
  });

  it('takes a guessed left-over of the same type, and falls back to the default names when nothing matches', () => {
    const guessed: LeftOver[] = [{ config: { type: 'udp', settings: {} }, slot: 1, guessed: true }];
    expect(matchInstance('udp', config({ Type: 'udp', Port: 8300 }), guessed)).to.deep.equal({ type: 'udp', device: 'flannel1', protocol: 124, slot: 1, found: true });
    const other: LeftOver[] = [{ config: { type: 'vxlan', settings: { VNI: 1, Port: 8472 } }, slot: 0, device: 'flannel.1' }];
    expect(matchInstance('vxlan', config({ Type: 'vxlan', VNI: 3 }), other)).to.deep.equal({ type: 'vxlan', device: 'flannel.3', protocol: 117, slot: 0, found: false });
    expect(matchInstance('host-gw', config({ Type: 'host-gw' }), [])).to.deep.equal({ type: 'host-gw', device: undefined, protocol: 118, slot: 0, found: false });
  });
});
