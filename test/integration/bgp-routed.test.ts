/**
 * The bgp backend across two L3 segments: nodes 0 and 1 on 198.18.0.0/24,
 * node 2 on 198.18.1.0/24 behind a router namespace, which runs its own
 * BIRD as a top-of-rack router in AS 65000. The network config lists both
 * of the router's legs in `Peers` with `"Mesh": false`; each node peers with
 * the leg on its own link. Every pod reaches every pod through the router
 * with no encapsulation, and the router's kernel holds every pod subnet.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { allPodsPing } from '../harness/checks';
import { TwillCluster } from '../harness/twill-cluster';
import { ping } from '../harness/ping';
import { startCapture } from '../harness/capture';
import { FAR_UNDERLAY } from '../harness/cluster';
import { NsProcess, run } from '../harness/netns';
import { waitFor } from '../harness/wait';
import { birdSessions } from '../../backends/bgp/bird-control';

const FAR = 2;
const ROUTER_AS = 65000;
const NEAR_LEG = '198.18.0.253';

describe('bgp backend across two L3 segments: a router running BIRD as ToR (eBGP, "Peers")', function () {
  this.timeout(180_000);
  let tc: TwillCluster;
  let router: NsProcess | undefined;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-tor-'));
  const runDirs: string[] = [];

  before(async () => {
    tc = await TwillCluster.create({
      nodes: 3,
      farNodes: [FAR],
      config: {
        Network: '10.244.0.0/16',
        Backend: { Type: 'bgp', Mesh: false, Peers: [{ IP: NEAR_LEG, ASN: ROUTER_AS }, { IP: FAR_UNDERLAY.routerIp, ASN: ROUTER_AS }] },
      },
      agentArgs: ['--repair-interval', '2'],
      start: false,
    });
    const nodes = [0, 1, 2].map((i) => tc.net.nodeIp(i));
    writeFileSync(path.join(dir, 'bird.conf'), [
      `router id ${NEAR_LEG};`,
      'protocol device { scan time 10; }',
      'protocol kernel { ipv4 { import none; export all; }; }',
      `template bgp node { local as ${ROUTER_AS}; direct; ipv4 { import all; export all; }; }`,
      ...nodes.map((ip, i) => `protocol bgp node${i} from node { neighbor ${ip} as 64512; }`),
      '',
    ].join('\n'));
    router = await NsProcess.spawn(tc.net.router, ['bird', '-f', '-c', path.join(dir, 'bird.conf'), '-s', path.join(dir, 'bird.ctl')]);
    for (let i = 0; i < 3; i++) runDirs.push(`/run/twill/bird-${statSync(`/run/netns/${tc.nodeNs(i)}`).ino}`);
    for (let i = 0; i < 3; i++) await tc.startAgent(i);
    for (let i = 0; i < 3; i++) await tc.addPod(i);
    await waitFor('the router to learn every pod subnet', async () => (await birdSessions(path.join(dir, 'bird.ctl'))).every((s) => s.info.startsWith('Established')), 30_000, 250);
  });
  after(async () => {
    await router?.stop();
    await tc?.destroy();
    for (const d of [...runDirs, dir]) rmSync(d, { recursive: true, force: true });
  });

  it('each node peers only with the router leg on its link', async () => {
    for (let i = 0; i < 3; i++) {
      const sessions = await birdSessions(path.join(runDirs[i], 'bird.ctl'));
      const leg = i === FAR ? FAR_UNDERLAY.routerIp : NEAR_LEG;
      expect(sessions.map((s) => [s.neighbor, s.neighborAs, s.info.split(/\s+/)[0]]), `node ${i}`).to.deep.equal([[leg, ROUTER_AS, 'Established']]);
    }
  });

  it('the router\'s kernel holds every pod subnet, via the node that owns it', async () => {
    await waitFor('3 pod routes in the router', async () => {
      const routes = (await run(['ip', '-n', tc.net.router!, 'route', 'show', 'proto', 'bird'])).stdout;
      return [0, 1, 2].every((i) => routes.includes(`${tc.lease(i).subnet} via ${tc.net.nodeIp(i)}`));
    }, 30_000, 250);
  });

  it('every pod reaches every pod, across the router, with no encapsulation', async () => {
    await waitFor('every node to hold BIRD\'s route to the other two', async () => {
      for (let i = 0; i < 3; i++) {
        const routes = await tc.net.ip(i, ['route', 'show', 'proto', 'bird']);
        if ([0, 1, 2].filter((p) => p !== i).some((p) => !routes.includes(tc.lease(p).subnet))) return false;
      }
      return true;
    }, 30_000, 250);
    expect(await tc.net.ip(FAR, ['route', 'show', tc.lease(0).subnet])).to.contain(`via ${FAR_UNDERLAY.routerIp}`);
    expect(await allPodsPing(tc)).to.deep.equal([]);
    const wire = await startCapture(tc.nodeNs(FAR), 'eth0', 'ip and not tcp port 179');
    await ping(tc.podNs(0), tc.podIp(FAR), { count: 5, intervalMs: 50 });
    const frames = await wire.stop();
    expect(frames.length, 'frames on the far node\'s eth0').to.be.at.least(10);
    for (const f of frames) {
      expect(f.outer.proto, `${f.outer.src} -> ${f.outer.dst}`).to.equal(1);
      expect([f.outer.src, f.outer.dst].sort()).to.deep.equal([tc.podIp(0), tc.podIp(FAR)].sort());
    }
  });
});
