/**
 * DirectReach's reporting when the kernel refuses neighbour entries: a
 * node on a link with more nodes than the neighbour table holds (host-gw at
 * thousands of peers) gets one line naming the sysctl, not one per peer.
 */
import { expect } from 'chai';
import { DirectReach, neighbourTableFull, ROUTE_MAX_AGE_MS } from '../../backends/direct-reach';
import { NetlinkError, type Netlink } from '../../lib/netlink';
import { checkNeighbourTable } from '../../lib/diagnose/sysctls';
import { Findings } from '../../lib/diagnose/findings';

describe('DirectReach when the neighbour table is full', () => {
  const ext = { name: 'eth0', index: 2 };
  const peers = Array.from({ length: 40 }, (_, i) => `198.18.1.${i + 1}`);
  const fake = (refuse: (ip: string) => NetlinkError | undefined) => ({
    listNeighbors: async () => [],
    routeGet: async () => ({ type: 'unicast', ifindex: ext.index, dst: '', table: 254 }),
    probeNeighbor: async ({ ip }: { ip: string }) => {
      const err = refuse(ip);
      if (err) throw err;
    },
  }) as unknown as Netlink;

  it('says once that the table is full and which sysctl to raise, and still lists other failures one by one', async () => {
    const reach = new DirectReach(fake((ip) => (ip === '198.18.1.1' ? new NetlinkError('probe neighbour', ip, 'EPERM')
      : ip.endsWith('.40') ? undefined : new NetlinkError('probe neighbour', ip, 'ENOBUFS'))), ext);
    const problems = await reach.refresh(peers);
    expect(problems).to.have.length(2);
    expect(problems[0]).to.match(/^starting ARP resolution of 198\.18\.1\.1 on eth0: /);
    expect(problems[1]).to.match(/^the kernel's neighbour table is full: 38 of 40 ARP resolutions on eth0 were refused \(ENOBUFS\); raise net\.ipv4\.neigh\.default\.gc_thresh3( \(now \d+\))? and gc_thresh2 above the number of nodes on this link$/);
    // The verdicts stand: the peers are on the link, their entries merely pending.
    expect(reach.isDirect('198.18.1.2')).to.equal(true);
  });

  it('names the current limit when it can read it', () => {
    expect(neighbourTableFull(3, 5, 'eth0', '1024')).to.contain('gc_thresh3 (now 1024) and gc_thresh2');
    expect(neighbourTableFull(3, 5, 'eth0', undefined)).to.contain('gc_thresh3 and gc_thresh2');
  });
});

describe('twill diagnose on the neighbour table', () => {
  const read = (limit: string) => (p: string) => (p === 'net/ipv4/neigh/default/gc_thresh3' ? limit : undefined);

  it('warns once the cluster has as many peers as gc_thresh3, with the sysctls to set', () => {
    const out = new Findings();
    checkNeighbourTable(5000, out, read('1024'));
    expect(out.all).to.have.length(1);
    expect(out.all[0].level).to.equal('WARN');
    expect(out.all[0].what).to.contain('5000 peers, at least net.ipv4.neigh.default.gc_thresh3 = 1024');
    expect(out.all[0].advice).to.contain('sysctl -w net.ipv4.neigh.default.gc_thresh3=16384 net.ipv4.neigh.default.gc_thresh2=8192');
  });

  it('says nothing below the limit or when it cannot read it', () => {
    const out = new Findings();
    checkNeighbourTable(1023, out, read('1024'));
    checkNeighbourTable(5000, out, read('nonsense'));
    checkNeighbourTable(5000, out, () => undefined);
    expect(out.all).to.deep.equal([]);
  });
});

describe('DirectReach.version: what was decided from its answers stands while it does', () => {
  const ext = { name: 'eth0', index: 2 };
  let gateway: Record<string, string> = {};
  const nl = {
    listNeighbors: async () => [],
    routeGet: async (ip: string) => ({ type: 'unicast', ifindex: ext.index, dst: ip, table: 254, ...(gateway[ip] ? { gateway: gateway[ip] } : {}) }),
    probeNeighbor: async () => undefined,
  } as unknown as Netlink;

  it('stays when a refresh gives the same answers, and rises when an answer, a reason for not direct, or the set of IPs changes', async () => {
    gateway = {};
    const reach = new DirectReach(nl, ext, { maxAgeMs: 0 });
    await reach.refresh(['198.18.0.2', '198.18.0.3']);
    const v0 = reach.version;
    await reach.refresh(['198.18.0.2', '198.18.0.3']);
    expect(reach.version, 'same answers').to.equal(v0);

    gateway['198.18.0.3'] = '198.18.0.1';
    await reach.refresh(['198.18.0.2', '198.18.0.3']);
    expect(reach.isDirect('198.18.0.3')).to.equal(false);
    const v1 = reach.version;
    expect(v1, 'a peer that became routed').to.be.greaterThan(v0);

    gateway['198.18.0.3'] = '198.18.0.9';
    await reach.refresh(['198.18.0.2', '198.18.0.3']);
    const v2 = reach.version;
    expect(v2, 'still not direct, for another reason (it is in the skip message)').to.be.greaterThan(v1);

    await reach.refresh(['198.18.0.2']);
    expect(reach.version, 'an IP forgotten').to.be.greaterThan(v2);
  });
});

describe('DirectReach with kernel notifications: route answers stand until the kernel says routes changed', () => {
  const ext = { name: 'eth0', index: 2 };
  const peers = ['198.18.0.2', '198.18.0.3'];
  let lookups: string[] = [];
  let neighbourDumps = 0;
  let failed = new Set<string>();
  let gateway: Record<string, string> = {};
  const nl = {
    listNeighbors: async () => {
      neighbourDumps++;
      return [...failed].map((ip) => ({ ip, ifindex: ext.index, state: ['failed'] }));
    },
    routeGet: async (ip: string) => {
      lookups.push(ip);
      return { type: 'unicast', ifindex: ext.index, dst: ip, table: 254, ...(gateway[ip] ? { gateway: gateway[ip] } : {}) };
    },
    probeNeighbor: async () => undefined,
  } as unknown as Netlink;
  beforeEach(() => {
    lookups = [];
    neighbourDumps = 0;
    failed = new Set();
    gateway = {};
  });

  it('asks only the neighbour table again while the notification count stands, and every route once it moved', async () => {
    const reach = new DirectReach(nl, ext, { maxAgeMs: 0 });
    await reach.refresh(peers, 7);
    expect(lookups).to.deep.equal(peers);
    lookups = [];
    gateway['198.18.0.3'] = '198.18.0.1'; // not announced yet: the answer stands
    await reach.refresh(peers, 7);
    expect(lookups, 'no route lookup at the same count').to.deep.equal([]);
    expect(neighbourDumps, 'the neighbour part is due at every refresh here').to.equal(2);
    expect(reach.isDirect('198.18.0.3')).to.equal(true);
    await reach.refresh(peers, 8);
    expect(lookups, 'a notification arrived: every route again').to.deep.equal(peers);
    expect(reach.isDirect('198.18.0.3')).to.equal(false);
    expect(reach.why('198.18.0.3')).to.equal('routed via 198.18.0.1');
  });

  it('still finds a peer whose ARP resolution failed, with its route answer standing', async () => {
    const reach = new DirectReach(nl, ext, { maxAgeMs: 0 });
    await reach.refresh(peers, 1);
    failed.add('198.18.0.2');
    lookups = [];
    await reach.refresh(peers, 1);
    expect(lookups).to.deep.equal([]);
    expect(reach.isDirect('198.18.0.2')).to.equal(false);
    expect(reach.isDirect('198.18.0.3')).to.equal(true);
  });

  it('looks every route up again without notifications, and after ROUTE_MAX_AGE_MS with them', async () => {
    const reach = new DirectReach(nl, ext, { maxAgeMs: 0 });
    await reach.refresh(peers);
    await reach.refresh(peers);
    expect(lookups, 'no notifications: no route answer stands').to.have.length(4);
    lookups = [];
    const realNow = Date.now;
    try {
      await reach.refresh(peers, 3);
      Date.now = () => realNow() + ROUTE_MAX_AGE_MS;
      await reach.refresh(peers, 3);
    } finally {
      Date.now = realNow;
    }
    expect(lookups, 'asked at count 3, then again once the answers were old').to.have.length(4);
  });
});
