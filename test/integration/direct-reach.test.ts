/**
 * backends/direct-reach.ts against a real kernel: which peers a node reaches
 * directly on its external link (host-gw, vxlan DirectRouting), decided by
 * the kernel's route lookup and ARP rather than by the interface's prefix.
 *
 * Two namespaces joined by a veth: the "node" (eth0 198.18.0.1/23, with
 * 198.18.1.0/24 routed via 198.18.0.2, and a second link other0 on
 * 198.19.0.0/24) and a "neighbour" answering ARP for 198.18.0.2. DirectReach
 * runs in the node through netlink-driver.ts. Only 198.18.0.0/15 is used,
 * inside the namespaces this test creates; after() deletes them, which
 * removes every link and route with them, and stops the driver by its PID.
 */
import { expect } from 'chai';
import { randomBytes } from 'crypto';
import type { NeighborInfo } from '../../lib/netlink';
import type { DirectReachResult } from './netlink-driver';
import { Driver, run } from './netlink-client';
import { waitFor } from '../harness/wait';

describe('DirectReach: which peers are on the link, by route lookup and ARP', function () {
  this.timeout(60_000);
  const id = randomBytes(4).toString('hex');
  const node = `twtest-dr-${id}-a`;
  const neighbour = `twtest-dr-${id}-b`;
  const created: string[] = [];
  let drv: Driver | undefined;

  const ipIn = (ns: string, ...args: string[]): Promise<string> => run(['ip', '-n', ns, ...args]);
  const refresh = (ips: string[], extra: string[] = []): Promise<DirectReachResult> => drv!.call<DirectReachResult>('directReachRefresh', 'eth0', ips, extra);
  const neighbourState = async (ip: string): Promise<string> => {
    const list = await drv!.call<NeighborInfo[]>('listNeighbors', 'eth0', 4);
    return list.find((n) => n.ip === ip)?.state.join(',') ?? 'none';
  };

  before(async function () {
    for (const ns of [node, neighbour]) {
      await run(['ip', 'netns', 'add', ns]);
      created.push(ns);
      await ipIn(ns, 'link', 'set', 'lo', 'up');
    }
    await ipIn(node, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', neighbour);
    await ipIn(node, 'addr', 'add', '198.18.0.1/23', 'dev', 'eth0');
    await ipIn(neighbour, 'addr', 'add', '198.18.0.2/23', 'dev', 'eth0');
    await ipIn(node, 'link', 'set', 'eth0', 'up');
    await ipIn(neighbour, 'link', 'set', 'eth0', 'up');
    // Inside eth0's /23, but through a router: the prefix says on-link, the kernel does not.
    await ipIn(node, 'route', 'add', '198.18.1.0/24', 'via', '198.18.0.2', 'dev', 'eth0');
    // Another link of the node's own.
    await ipIn(node, 'link', 'add', 'other0', 'type', 'veth', 'peer', 'name', 'other1');
    await ipIn(node, 'link', 'set', 'other1', 'up');
    await ipIn(node, 'link', 'set', 'other0', 'up');
    await ipIn(node, 'addr', 'add', '198.19.0.1/24', 'dev', 'other0');
    drv = Driver.start(node);
  });

  after(async function () {
    if (drv) await drv.stop().catch(() => undefined);
    for (const ns of created.reverse()) await run(['ip', 'netns', 'del', ns]).catch(() => undefined);
  });

  it('calls a peer on the link direct, and starts ARP for it so that its entry resolves', async function () {
    const r = await refresh(['198.18.0.2']);
    expect(r.problems).to.deep.equal([]);
    expect(r.direct['198.18.0.2'], r.why['198.18.0.2']).to.equal(true);
    // The refresh found no entry and asked the kernel to resolve it; the neighbour answers.
    await waitFor('198.18.0.2 to resolve', async () => /reachable|stale|delay/.test(await neighbourState('198.18.0.2')), 10_000);
    const again = await refresh(['198.18.0.2']);
    expect(again.direct['198.18.0.2'], again.why['198.18.0.2']).to.equal(true);
    expect(again.why['198.18.0.2']).to.match(/neighbour (reachable|stale|delay)/);
  });

  it("calls an IPv6 peer (a PublicIPv6) on the link direct by the IPv6 route lookup and NDP, and one behind a router not direct", async function () {
    await ipIn(node, '-6', 'addr', 'add', 'fd00:198:18::1/64', 'dev', 'eth0', 'nodad');
    await ipIn(neighbour, '-6', 'addr', 'add', 'fd00:198:18::2/64', 'dev', 'eth0', 'nodad');
    await ipIn(node, '-6', 'route', 'add', 'fd00:198:19::/64', 'via', 'fd00:198:18::2', 'dev', 'eth0');
    const r = await refresh(['fd00:198:18::2', 'fd00:198:19::5']);
    expect(r.problems).to.deep.equal([]);
    expect(r.direct['fd00:198:18::2'], r.why['fd00:198:18::2']).to.equal(true);
    expect(r.direct['fd00:198:19::5'], r.why['fd00:198:19::5']).to.equal(false);
    expect(r.why['fd00:198:19::5']).to.include('routed via fd00:198:18::2');
    // The refresh started neighbour discovery for it; the neighbour answers.
    await waitFor('fd00:198:18::2 to resolve', async () => {
      const list = await drv!.call<NeighborInfo[]>('listNeighbors', 'eth0', 6);
      return /reachable|stale|delay/.test(list.find((n) => n.ip === 'fd00:198:18::2')?.state.join(',') ?? '');
    }, 10_000);
    const again = await refresh(['fd00:198:18::2']);
    expect(again.why['fd00:198:18::2']).to.match(/neighbour (reachable|stale|delay)/);
  });

  it('keeps a verdict for maxAgeMs: a route added meanwhile is seen only by a refresh without a fresh verdict', async function () {
    const cached = (ips: string[]) => drv!.call<DirectReachResult>('directReachRefresh', 'eth0', ips, [], 60_000);
    expect((await cached(['198.18.0.2'])).direct['198.18.0.2']).to.equal(true);
    await ipIn(node, 'route', 'add', '198.18.0.2/32', 'via', '198.18.0.3', 'dev', 'eth0', 'onlink');
    try {
      const r = await cached(['198.18.0.2']);
      expect(r.direct['198.18.0.2'], 'within maxAgeMs the last verdict stands (no lookup per reconcile)').to.equal(true);
      const fresh = await refresh(['198.18.0.2']);
      expect(fresh.direct['198.18.0.2'], fresh.why['198.18.0.2']).to.equal(false);
      expect(fresh.why['198.18.0.2']).to.equal('routed via 198.18.0.3');
    } finally {
      await ipIn(node, 'route', 'del', '198.18.0.2/32');
    }
  });

  it('calls a peer inside the interface prefix but behind a more specific route via a gateway not direct', async function () {
    const r = await refresh(['198.18.1.3']);
    expect(r.problems).to.deep.equal([]);
    expect(r.direct['198.18.1.3'], r.why['198.18.1.3']).to.equal(false);
    expect(r.why['198.18.1.3']).to.equal('routed via 198.18.0.2');
    expect(await neighbourState('198.18.1.3'), 'no ARP for a routed peer').to.equal('none');
  });

  it('calls a peer whose ARP fails not direct once the entry is FAILED, and keeps it so when the entry is gone', async function () {
    this.timeout(30_000);
    const dead = '198.18.0.77';
    const first = await refresh([dead]);
    expect(first.direct[dead], 'unknown neighbour: reachable until ARP says otherwise').to.equal(true);
    expect(['incomplete', 'failed']).to.include(await neighbourState(dead));
    await waitFor(`${dead} to fail ARP`, async () => (await neighbourState(dead)) === 'failed', 15_000);
    const failed = await refresh([dead]);
    expect(failed.direct[dead], failed.why[dead]).to.equal(false);
    expect(failed.why[dead]).to.include('ARP resolution failed');
    // Tried again (INCOMPLETE), still not direct meanwhile.
    expect(['incomplete', 'failed']).to.include(await neighbourState(dead));
    const retrying = await refresh([dead]);
    expect(retrying.direct[dead], retrying.why[dead]).to.equal(false);
    // The kernel garbage-collects FAILED entries: that is no news, the verdict stays (and ARP starts again).
    await ipIn(node, 'neigh', 'del', dead, 'dev', 'eth0');
    const forgotten = await refresh([dead]);
    expect(forgotten.direct[dead], forgotten.why[dead]).to.equal(false);
    expect(['incomplete', 'failed']).to.include(await neighbourState(dead));
    expect(await ipIn(node, 'neigh', 'show', dead, 'dev', 'eth0'), 'the probe adds nothing permanent').to.not.include('PERMANENT');
  });

  it('calls that peer direct again once it answers ARP, though nothing else sends to it', async function () {
    this.timeout(30_000);
    const dead = '198.18.0.77';
    expect((await refresh([dead])).direct[dead]).to.equal(false);
    await ipIn(neighbour, 'addr', 'add', `${dead}/23`, 'dev', 'eth0');
    const back = await waitFor(`${dead} to be direct again`, async () => {
      const r = await refresh([dead]);
      return r.direct[dead] ? r : undefined;
    }, 15_000, 500);
    expect(back?.why[dead]).to.match(/neighbour (reachable|stale|delay)/);
  });

  it('calls no route, another interface, the node itself and an IP never refreshed not direct, without failing the others', async function () {
    const r = await refresh(['198.18.0.2', '198.19.7.7', '198.19.0.5', '198.18.0.1', '198.18.1.3'], ['198.18.0.9']);
    expect(r.problems).to.deep.equal([]);
    expect(r.direct).to.deep.equal({
      '198.18.0.2': true, '198.19.7.7': false, '198.19.0.5': false, '198.18.0.1': false, '198.18.1.3': false, '198.18.0.9': false,
    });
    expect(r.why['198.19.7.7']).to.equal('no route');
    expect(r.why['198.19.0.5']).to.match(/^routed out of another interface/);
    expect(r.why['198.18.0.1']).to.equal('a local route');
    expect(r.why['198.18.0.9']).to.equal('not looked up yet');
  });

  it('reports a lookup it cannot make in its list and calls that IP not direct, the others still answered', async function () {
    const r = await refresh(['not-an-ip', '198.18.0.2']);
    expect(r.direct['not-an-ip']).to.equal(false);
    expect(r.direct['198.18.0.2']).to.equal(true);
    expect(r.problems).to.have.length(1);
    expect(r.problems[0]).to.match(/^route lookup of not-an-ip: dst/);
  });
});
