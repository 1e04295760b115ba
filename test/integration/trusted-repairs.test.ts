/**
 * Repairs that trust the kernel's notifications: while nothing touches
 * twill's routes or devices, a repair does not read the kernel again
 * (twill_repairs_trusted_total counts those), and a change someone makes
 * (a route of theirs in place of twill's, an ARP entry given another MAC;
 * changes, not deletions, so only the summary of skipped notifications
 * tells) makes the next repair read the kernel and put it back, long before
 * the full read every 12 repair intervals would. The tunnel guard the same
 * way: it reads only its counters at a repair while nftables announces no
 * change, and the whole table once something changed it.
 *
 * host-gw too, whose plan also depends on which peers are direct: a repair
 * trusts the kernel while those answers stand as well.
 *
 * Two nodes on vxlan, then two on host-gw, in the test's own namespaces
 * (198.18.0.0/24 underlay, 10.244.0.0/16 pods).
 */
import { expect } from 'chai';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { httpBody } from '../harness/checks';
import { TwillCluster } from '../harness/twill-cluster';
import { waitFor } from '../harness/wait';

const REPAIR_S = 2;
const HEALTH_PORT = 9468;
/** Well inside the 12 × REPAIR_S between full reads: only a notification can make the repair look this soon. */
const NOTICED_WITHIN_MS = (2 * REPAIR_S + 1) * 1000;

async function trustedRepairs(tc: TwillCluster): Promise<number> {
  const body = await httpBody(tc.net.nodeIp(0), HEALTH_PORT, '/metrics');
  return Number(/^twill_repairs_trusted_total (\d+)/m.exec(body)?.[1] ?? 'NaN');
}

/** Node 0's route to node 1's subnet. */
async function peerRoute(tc: TwillCluster): Promise<string> {
  return (await tc.net.ip(0, ['route', 'show', tc.lease(1).subnet])).trim();
}

async function twoNodes(backend: string, env: (node: number) => Record<string, string> | undefined = () => undefined): Promise<TwillCluster> {
  const tc: TwillCluster = await TwillCluster.create({
    nodes: 2,
    config: { Network: '10.244.0.0/16', Backend: { Type: backend } },
    agentArgs: ['--repair-interval', String(REPAIR_S), '--healthz-port', String(HEALTH_PORT)],
    agentArgsFor: (node) => ['--healthz-ip', tc.net.nodeIp(node)],
    start: false,
  });
  for (const node of [0, 1]) await tc.startAgent(node, [], { env: env(node) });
  return tc;
}

/** Start-up's own changes (a device's link-local address, the peer's entries) are read back first. */
async function expectTrustedRepairs(tc: TwillCluster): Promise<void> {
  const before = await trustedRepairs(tc);
  expect(before, 'twill_repairs_trusted_total is exported').to.not.be.NaN;
  await waitFor('two repairs that trust the notifications', async () => (await trustedRepairs(tc)) - before >= 2, 10 * REPAIR_S * 1000, 200);
}

/** Same destination, another protocol (boot): the kernel announces the new route only. */
async function expectReplacedRouteBack(tc: TwillCluster, theirs: string[]): Promise<void> {
  const route = await peerRoute(tc);
  await tc.net.ip(0, ['route', 'replace', tc.lease(1).subnet, ...theirs]);
  expect(await peerRoute(tc)).to.not.equal(route);
  await waitFor('twilld to put its route back', async () => (await peerRoute(tc)) === route, NOTICED_WITHIN_MS);
}

describe('repairs trust kernel notifications while nothing changes (vxlan)', function () {
  this.timeout(120_000);
  let tc: TwillCluster;
  const trusted = (): Promise<number> => trustedRepairs(tc);
  /** An `nft` first on node 0's PATH that notes every run, then runs the real one. */
  const nftDir = mkdtempSync(path.join(tmpdir(), 'twill-nft-'));
  const nftRuns = path.join(nftDir, 'runs');
  /** Node 0's ARP entry for node 1's VTEP (the first address of its subnet). */
  const peerArp = async (): Promise<string> => (await tc.net.ip(0, ['neigh', 'show', tc.lease(1).subnet.split('/')[0], 'dev', 'flannel.1'])).trim();

  before(async () => {
    const real = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => existsSync(p)) ?? 'nft';
    writeFileSync(path.join(nftDir, 'nft'), `#!/bin/sh\necho "$*" >> '${nftRuns}'\nexec ${real} "$@"\n`);
    chmodSync(path.join(nftDir, 'nft'), 0o755);
    tc = await twoNodes('vxlan', (node) => (node === 0 ? { PATH: `${nftDir}:${process.env.PATH ?? ''}` } : undefined));
    await waitFor('node 0 to route node 1', async () => (await peerRoute(tc)).includes('flannel.1'), 20_000);
  });
  after(async () => {
    await tc?.destroy();
    rmSync(nftDir, { recursive: true, force: true });
  });

  it('does not read the kernel again at repairs while nothing touches its objects', async () => {
    await expectTrustedRepairs(tc);
  });

  it('runs the tunnel guard\'s nftables commands in its own process, not as an nft process each', async () => {
    expect(await tc.net.exec(0, ['nft', 'list', 'set', 'ip', 'twill_guard', 'peers']).then((r) => r.stdout)).to.include(tc.net.nodeIp(1));
    // Installing the guard, admitting node 1 and every repair since: none ran the nft on the PATH.
    expect(existsSync(nftRuns) ? readFileSync(nftRuns, 'utf8') : '').to.equal('');
  });

  it('puts back a route someone replaced with their own within a repair or two', async () => {
    expect(await peerRoute(tc)).to.match(/dev flannel\.1 .*onlink/);
    await expectReplacedRouteBack(tc, ['dev', 'eth0']);
  });

  it('notices at the next repair when someone takes a peer out of the tunnel guard or lets another host in', async () => {
    const peers = async (): Promise<string> => (await tc.net.exec(0, ['nft', 'list', 'set', 'ip', 'twill_guard', 'peers'])).stdout;
    expect(await peers()).to.include(tc.net.nodeIp(1));
    // The guard reads only its counters at a repair while nftables announces no change.
    await tc.net.exec(0, ['nft', 'delete', 'element', 'ip', 'twill_guard', 'peers', `{ ${tc.net.nodeIp(1)} }`]);
    await waitFor('twilld to let node 1 in again', async () => (await peers()).includes(tc.net.nodeIp(1)), NOTICED_WITHIN_MS);
    await tc.net.exec(0, ['nft', 'add', 'element', 'ip', 'twill_guard', 'peers', '{ 198.18.0.250 }']);
    await waitFor('twilld to shut the host it never admitted out again', async () => !(await peers()).includes('198.18.0.250'), NOTICED_WITHIN_MS);
  });

  it('puts back an ARP entry someone gave another MAC, and trusts the notifications again afterwards', async () => {
    const entry = await peerArp();
    expect(entry, 'node 1\'s VTEP in node 0\'s ARP table').to.match(/lladdr [0-9a-f:]{17} PERMANENT/);
    await tc.net.ip(0, ['neigh', 'replace', tc.lease(1).subnet.split('/')[0], 'lladdr', '02:00:00:00:00:99', 'dev', 'flannel.1', 'nud', 'permanent']);
    expect(await peerArp()).to.include('02:00:00:00:00:99');
    await waitFor('twilld to put node 1\'s VTEP MAC back', async () => (await peerArp()) === entry, NOTICED_WITHIN_MS);
    const before = await trusted();
    await waitFor('a repair that trusts the notifications again', async () => (await trusted()) > before, 3 * REPAIR_S * 1000);
  });
});

describe('repairs trust kernel notifications and reachability while nothing changes (host-gw)', function () {
  this.timeout(120_000);
  let tc: TwillCluster;

  before(async () => {
    tc = await twoNodes('host-gw');
    await waitFor('node 0 to route node 1', async () => (await peerRoute(tc)).includes(`via ${tc.net.nodeIp(1)}`), 20_000);
  });
  after(async () => {
    await tc?.destroy();
  });

  it('does not read the kernel again at repairs while no route changed and the peer stays direct', async () => {
    await expectTrustedRepairs(tc);
  });

  it('puts back a route someone replaced with their own within a repair or two', async () => {
    expect(await peerRoute(tc)).to.match(/via 198\.18\.\S+ dev eth0 proto 118/);
    await expectReplacedRouteBack(tc, ['dev', 'eth0']);
  });
});
