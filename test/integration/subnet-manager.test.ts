import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { parseNetworkConfig, NetworkConfig } from '../../lib/config';
import { IPNet } from '../../lib/ip';
import { LeaseAttrs, LeaseEvent, OutOfSubnetsError, encodeLeaseAttrs } from '../../lib/subnet';
import { EtcdRegistry, EtcdSubnetManager, LeaseWatcher } from '../../lib/subnet/etcd';
import { KNOWN_BACKEND_TYPES } from '../../backends';
import type { EtcdServer } from '../harness/etcd';
import { withEtcd } from '../harness/etcd-hooks';
import { startTcpProxy } from '../harness/tcp-proxy';
import { MemoryLog } from '../harness/memory-log';
import { waitFor, sleep } from '../harness/wait';

const PREFIX = '/coreos.com/network';
const SUBNETS = `${PREFIX}/subnets/`;

function config(json: object): NetworkConfig {
  return parseNetworkConfig(JSON.stringify(json), KNOWN_BACKEND_TYPES);
}

function attrs(publicIP: string): LeaseAttrs {
  return { publicIP, publicIPv6: null, backendType: 'host-gw' };
}

describe('etcd subnet manager (real etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let admin: Etcd3;
  const cleanups: (() => Promise<void> | void)[] = [];
  const net16 = config({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } });

  withEtcd((server, client) => {
    etcd = server;
    admin = client;
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await admin.delete().prefix(PREFIX);
  });

  function manager(opts: { ttl?: number; marginSeconds?: number; endpoint?: string; log?: MemoryLog; client?: Etcd3 } = {}) {
    const client = opts.client ?? new Etcd3({ hosts: opts.endpoint ?? etcd.endpoint });
    if (!opts.client) cleanups.push(() => client.close());
    const registry = new EtcdRegistry(client, PREFIX);
    const log = opts.log ?? new MemoryLog();
    const changes: string[] = [];
    const m = new EtcdSubnetManager(registry, {
      ttlSeconds: opts.ttl ?? 86400,
      renewMarginSeconds: opts.marginSeconds ?? 3600,
      log,
      onOwnLeaseChanged: (lease) => changes.push(lease.subnet.toString()),
    });
    cleanups.push(() => m.close());
    return { m, registry, log, changes };
  }

  async function leaseTTL(key: string): Promise<{ id: string; ttl: number } | undefined> {
    const res = await admin.kv.range({ key: Buffer.from(SUBNETS + key) });
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const id = String(kv.lease);
    if (id === '0') return { id, ttl: -1 };
    const t = await admin.leaseClient.leaseTimeToLive({ ID: id });
    return { id, ttl: Number(t.TTL) };
  }

  it('creates a lease holding flanneld\'s value, bound to an etcd lease with the configured TTL', async () => {
    const { m } = manager({ ttl: 600 });
    const lease = await m.acquireLease(net16, attrs('198.18.0.3'), {});
    expect(net16.network!.covers(lease.subnet)).to.equal(true);
    expect(lease.subnet.prefixLen).to.equal(24);
    const stored = await admin.get(SUBNETS + lease.key).string();
    expect(stored).to.equal('{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"host-gw"}');
    const t = await leaseTTL(lease.key);
    expect(t!.ttl).to.be.within(590, 600);
  });

  it('reuses the lease that carries this node\'s PublicIP after a restart, with the same etcd lease', async () => {
    const first = manager();
    const a = await first.m.acquireLease(net16, attrs('198.18.0.3'), {});
    await first.m.close();
    const second = manager();
    const b = await second.m.acquireLease(net16, attrs('198.18.0.3'), {});
    expect(b.subnet.toString()).to.equal(a.subnet.toString());
    expect(b.etcdLeaseId).to.equal(a.etcdLeaseId);
    expect((await admin.getAll().prefix(SUBNETS).keys()).length).to.equal(1);
  });

  it('updates the value in place when the node\'s attributes change on restart', async () => {
    const first = manager();
    const a = await first.m.acquireLease(net16, attrs('198.18.0.3'), {});
    await first.m.close();
    const second = manager();
    const b = await second.m.acquireLease(net16, { ...attrs('198.18.0.3'), backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '5e:ec:40:e1:80:98' } }, {});
    expect(b.key).to.equal(a.key);
    expect(await admin.get(SUBNETS + b.key).string()).to.equal(
      '{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:ec:40:e1:80:98"}}');
    expect(b.etcdLeaseId).to.equal(a.etcdLeaseId);
  });

  describe('dual stack (EnableIPv6)', () => {
    const dual = config({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'host-gw' } });
    const dualAttrs = (n: number): LeaseAttrs => ({ ...attrs(`198.18.0.${n}`), publicIPv6: `fd00:198:18::${n}` });

    it('creates one key holding both subnets, as flanneld (a.b.c.d-len&v6-len), with PublicIPv6 in the value', async () => {
      const { m } = manager();
      const lease = await m.acquireLease(dual, dualAttrs(3), {});
      expect(lease.ipv6Subnet?.prefixLen).to.equal(64);
      expect(dual.ipv6Network!.covers(lease.ipv6Subnet!)).to.equal(true);
      expect(lease.key).to.equal(`${lease.subnet.ip.toString()}-24&${lease.ipv6Subnet!.ip.toString()}-64`);
      expect(await admin.getAll().prefix(SUBNETS).keys()).to.deep.equal([SUBNETS + lease.key]);
      expect(await admin.get(SUBNETS + lease.key).string()).to.equal('{"PublicIP":"198.18.0.3","PublicIPv6":"fd00:198:18::3","BackendType":"host-gw"}');
    });

    it('reuses the same two subnets and etcd lease after a restart', async () => {
      const first = manager();
      const a = await first.m.acquireLease(dual, dualAttrs(3), {});
      await first.m.close();
      const b = await manager().m.acquireLease(dual, dualAttrs(3), {});
      expect(b.key).to.equal(a.key);
      expect(b.etcdLeaseId).to.equal(a.etcdLeaseId);
    });

    it('takes both subnets of the previous subnet.env when they are free', async () => {
      const previous = { subnet: IPNet.parse('10.244.77.0/24'), ipv6Subnet: IPNet.parse('fd00:10:244:4d::/64') };
      const lease = await manager().m.acquireLease(dual, dualAttrs(3), previous);
      expect(lease.key).to.equal('10.244.77.0-24&fd00:10:244:4d::-64');
    });

    it("gives up this node's IPv4-only lease once IPv6 is on (as flanneld) and holds a dual-stack one, never both", async () => {
      const first = manager();
      const a = await first.m.acquireLease(net16, attrs('198.18.0.3'), {});
      await first.m.close();
      const { m, log } = manager();
      const b = await m.acquireLease(dual, dualAttrs(3), {});
      expect(b.ipv6Subnet).to.not.equal(undefined);
      expect(await admin.getAll().prefix(SUBNETS).keys()).to.deep.equal([SUBNETS + b.key]);
      const dropped = log.lines.find((l) => l.message.startsWith('dropping this node'));
      expect(dropped?.meta).to.deep.include({ key: a.key, why: 'EnableIPv6 is true but the lease has no IPv6 subnet' });
    });

    it("leaves this node's IPv4-only reservation alone (it is the operator's), with a warning, and reuses its fitting lease", async () => {
      await admin.put(SUBNETS + '10.244.9.0-24').value(encodeLeaseAttrs(attrs('198.18.0.3')));
      const first = manager();
      const a = await first.m.acquireLease(dual, dualAttrs(3), {});
      await first.m.close();
      const { m, log } = manager();
      const b = await m.acquireLease(dual, dualAttrs(3), {});
      expect(b.key).to.equal(a.key);
      expect(await admin.get(SUBNETS + '10.244.9.0-24').string()).to.not.equal(null);
      expect(log.messages('warn').join('\n')).to.include('reserved subnet does not fit');
    });
  });

  describe('IPv6 only (EnableIPv4 false)', () => {
    const v6only = config({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'host-gw' } });
    const v6Attrs = (n: number): LeaseAttrs => ({ ...attrs('0.0.0.0'), publicIPv6: `fd00:198:18::${n}` });

    it("creates flanneld's key 0.0.0.0-0&<IPv6 subnet> with PublicIP 0.0.0.0, and reuses it (same etcd lease) after a restart, found by PublicIPv6", async () => {
      const first = manager();
      const a = await first.m.acquireLease(v6only, v6Attrs(3), {});
      expect(a.key).to.match(/^0\.0\.0\.0-0&fd00:10:244:[0-9a-f]+::-64$/);
      expect(await admin.get(SUBNETS + a.key).string()).to.equal('{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:198:18::3","BackendType":"host-gw"}');
      await first.m.close();
      const b = await manager().m.acquireLease(v6only, v6Attrs(3), {});
      expect({ key: b.key, etcdLeaseId: b.etcdLeaseId }).to.deep.equal({ key: a.key, etcdLeaseId: a.etcdLeaseId });
    });

    it('gives 30 managers racing against one etcd 30 distinct IPv6 subnets, though every PublicIP is 0.0.0.0', async () => {
      const managers = Array.from({ length: 30 }, () => manager().m);
      const leases = await Promise.all(managers.map((m, i) => m.acquireLease(v6only, v6Attrs(i + 10), {})));
      expect(new Set(leases.map((l) => l.ipv6Subnet!.toString())).size).to.equal(30);
      expect((await admin.getAll().prefix(SUBNETS).keys()).length).to.equal(30);
    });

    it("takes the previous subnet.env's IPv6 subnet when free", async () => {
      const previous = { ipv6Subnet: IPNet.parse('fd00:10:244:4d::/64') };
      expect((await manager().m.acquireLease(v6only, v6Attrs(3), previous)).key).to.equal('0.0.0.0-0&fd00:10:244:4d::-64');
    });

    it("never takes another node's reservation: with two of three subnets reserved, it gets the third", async () => {
      const small = config({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/62', Backend: { Type: 'host-gw' } });
      for (const n of [1, 2]) await admin.put(`${SUBNETS}0.0.0.0-0&fd00:10:244:${n}::-64`).value(encodeLeaseAttrs(v6Attrs(n + 20)));
      expect((await manager().m.acquireLease(small, v6Attrs(3), {})).key).to.equal('0.0.0.0-0&fd00:10:244:3::-64');
      expect(await admin.get(`${SUBNETS}0.0.0.0-0&fd00:10:244:1::-64`).string()).to.equal(encodeLeaseAttrs(v6Attrs(21)));
      const err = await manager().m.acquireLease(small, v6Attrs(4), {}).then(() => undefined, (e: Error) => e);
      expect(err).to.be.instanceOf(OutOfSubnetsError);
      expect(err!.message).to.contain('fd00:10:244:1::/64 .. fd00:10:244:3::/64');
    });
  });

  it('takes the previous subnet.env subnet when it is still free', async () => {
    const { m } = manager();
    const wanted = IPNet.parse('10.244.77.0/24');
    const lease = await m.acquireLease(net16, attrs('198.18.0.9'), { subnet: wanted });
    expect(lease.subnet.toString()).to.equal('10.244.77.0/24');
  });

  it('does not take the previous subnet when another node holds it now', async () => {
    const other = manager();
    const held = await other.m.acquireLease(net16, attrs('198.18.0.4'), { subnet: IPNet.parse('10.244.77.0/24') });
    expect(held.subnet.toString()).to.equal('10.244.77.0/24');
    const { m } = manager();
    const lease = await m.acquireLease(net16, attrs('198.18.0.9'), { subnet: IPNet.parse('10.244.77.0/24') });
    expect(lease.subnet.toString()).to.not.equal('10.244.77.0/24');
  });

  it('renews by keeping the same etcd lease alive instead of granting a new one', async () => {
    const { m } = manager({ ttl: 3, marginSeconds: 2 });
    const lease = await m.acquireLease(net16, attrs('198.18.0.3'), {});
    await sleep(7000);
    const t = await leaseTTL(lease.key);
    expect(t, 'the key outlived three TTLs').to.not.equal(undefined);
    expect(t!.id).to.equal(lease.etcdLeaseId);
    expect(m.leaseExpiry()!.getTime()).to.be.greaterThan(Date.now());
  });

  it('frees the subnet when the node stops renewing and the TTL runs out', async () => {
    const { m } = manager({ ttl: 2 });
    const lease = await m.acquireLease(net16, attrs('198.18.0.3'), {});
    await m.close();
    await waitFor('the key to expire', async () => (await admin.get(SUBNETS + lease.key).string()) === null, 8000);
  });

  it('never takes over a reservation of another node, and never gives it a TTL', async () => {
    const small = config({ Network: '10.10.0.0/24', SubnetLen: 26, Backend: { Type: 'host-gw' } });
    // Subnets .64, .128 and .192 are allocatable; reserve two of them for another node.
    await admin.put(`${SUBNETS}10.10.0.64-26`).value(encodeLeaseAttrs(attrs('198.18.0.50')));
    await admin.put(`${SUBNETS}10.10.0.192-26`).value(encodeLeaseAttrs(attrs('198.18.0.51')));
    const { m } = manager();
    const lease = await m.acquireLease(small, attrs('198.18.0.3'), { subnet: IPNet.parse('10.10.0.64/26') });
    expect(lease.subnet.toString()).to.equal('10.10.0.128/26');
    expect(await admin.get(`${SUBNETS}10.10.0.64-26`).string()).to.contain('198.18.0.50');
    expect((await leaseTTL('10.10.0.64-26'))!.ttl).to.equal(-1);
  });

  it('uses a reservation that carries this node\'s PublicIP as it is, without a TTL', async () => {
    await admin.put(`${SUBNETS}10.244.200.0-24`).value(encodeLeaseAttrs(attrs('198.18.0.3')));
    const { m } = manager();
    const lease = await m.acquireLease(net16, attrs('198.18.0.3'), {});
    expect(lease.subnet.toString()).to.equal('10.244.200.0/24');
    expect(lease.etcdLeaseId).to.equal(undefined);
    expect((await leaseTTL('10.244.200.0-24'))!.ttl).to.equal(-1);
    expect(m.leaseExpiry()).to.equal(undefined);
  });

  it('re-acquires the same subnet when someone deletes the node\'s lease', async () => {
    const { m, log, changes } = manager();
    const lease = await m.acquireLease(net16, attrs('198.18.0.3'), {});
    await m.watchLeases(net16, { onEvents: () => undefined, onWarning: () => undefined });
    await admin.delete().key(SUBNETS + lease.key);
    // The key can reappear in etcd a moment before the manager has read its
    // own Txn reply and told its listener, so wait for both.
    await waitFor('the lease to come back', async () => changes.length > 0 && (await admin.get(SUBNETS + lease.key).string()) !== null, 10_000);
    expect(changes).to.deep.equal([lease.subnet.toString()]);
    expect(log.messages('warn').join('\n')).to.contain('own subnet lease lost');
    expect(m.ownLease()!.subnet.toString()).to.equal(lease.subnet.toString());
  });

  it('gives 100 managers racing against one etcd 100 distinct subnets', async () => {
    const clients = Array.from({ length: 10 }, () => new Etcd3({ hosts: etcd.endpoint }));
    cleanups.push(() => clients.forEach((c) => c.close()));
    const managers = Array.from({ length: 100 }, (_, i) => manager({ client: clients[i % clients.length] }).m);
    const leases = await Promise.all(managers.map((m, i) => m.acquireLease(net16, attrs(`198.18.1.${i + 1}`), {})));
    const subnets = new Set(leases.map((l) => l.subnet.toString()));
    expect(subnets.size).to.equal(100);
    expect((await admin.getAll().prefix(SUBNETS).keys()).length).to.equal(100);
  });

  it('fails with a clear out-of-subnets error naming the range when none is free', async () => {
    const small = config({ Network: '10.10.0.0/24', SubnetLen: 26, Backend: { Type: 'host-gw' } });
    for (let i = 1; i <= 3; i++) await manager().m.acquireLease(small, attrs(`198.18.0.${i}`), {});
    const err = await manager().m.acquireLease(small, attrs('198.18.0.4'), {}).then(() => undefined, (e: Error) => e);
    expect(err).to.be.instanceOf(OutOfSubnetsError);
    expect(err!.message).to.contain('out of subnets').and.to.contain('10.10.0.64/26 .. 10.10.0.192/26');
  });

  describe('lease watcher', () => {
    const MALFORMED: [string, string, string][] = [
      ['value that is not JSON', '10.244.50.0-24', 'not json'],
      ['value that is a JSON list', '10.244.51.0-24', '[1,2]'],
      ['value that is a number', '10.244.52.0-24', '42'],
      ['value without PublicIP', '10.244.53.0-24', '{"BackendType":"host-gw"}'],
      ['PublicIP that is a number', '10.244.54.0-24', '{"PublicIP":7}'],
      ['PublicIP that is not an address', '10.244.55.0-24', '{"PublicIP":"198.18.0.999"}'],
      ['PublicIP that is IPv6', '10.244.56.0-24', '{"PublicIP":"fc00::1"}'],
      ['PublicIPv6 that is not an address', '10.244.57.0-24', '{"PublicIP":"198.18.0.7","PublicIPv6":"zz::"}'],
      ['BackendType with shell metacharacters', '10.244.58.0-24', '{"PublicIP":"198.18.0.7","BackendType":"vxlan; rm -rf /"}'],
      ['oversized value', '10.244.59.0-24', JSON.stringify({ PublicIP: '198.18.0.7', Junk: 'x'.repeat(70_000) })],
      ['key that is not a subnet', 'not-a-subnet', '{"PublicIP":"198.18.0.7"}'],
      ['key with host bits set', '10.244.60.1-24', '{"PublicIP":"198.18.0.7"}'],
      ['key of the wrong length', '10.244.61.0-25', '{"PublicIP":"198.18.0.7"}'],
      ['key outside the network', '10.99.1.0-24', '{"PublicIP":"198.18.0.7"}'],
      ['key with an impossible prefix', '10.244.62.0-33', '{"PublicIP":"198.18.0.7"}'],
      ['key with trailing garbage', '10.244.63.0-24x', '{"PublicIP":"198.18.0.7"}'],
      ['key with path characters', '../10.244.64.0-24', '{"PublicIP":"198.18.0.7"}'],
      ['dual-stack key claiming a subnet another lease holds', '10.244.1.0-24&fc00::-64', '{"PublicIP":"198.18.0.8"}'],
    ];

    let watcher: LeaseWatcher | undefined;
    afterEach(async () => {
      await watcher?.stop();
      watcher = undefined;
    });

    function collect() {
      const events: LeaseEvent[] = [];
      const warnings: string[] = [];
      return { events, warnings, hooks: { onEvents: (e: LeaseEvent[]) => events.push(...e), onWarning: (w: string) => warnings.push(w) } };
    }

    it(`skips ${MALFORMED.length} kinds of malformed lease with one warning each and keeps every valid one`, async () => {
      await admin.put(`${SUBNETS}10.244.1.0-24`).value('{"PublicIP":"198.18.0.2","PublicIPv6":null}');
      for (const [, key, value] of MALFORMED) await admin.put(SUBNETS + key).value(value);
      await admin.put(`${SUBNETS}10.244.2.0-24`).value('{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"host-gw"}');
      const { registry } = manager();
      const c = collect();
      watcher = new LeaseWatcher(registry, net16, c.hooks);
      await watcher.start();
      expect([...watcher.leases().keys()].sort()).to.deep.equal(['10.244.1.0-24', '10.244.2.0-24']);
      expect(c.warnings).to.have.length(MALFORMED.length);
      for (const [what, key] of MALFORMED) {
        expect(c.warnings.some((w) => w.includes(JSON.stringify(key.slice(0, 80)))), what).to.equal(true);
      }
      // A later valid lease is still processed, and a re-list warns no more.
      await admin.put(`${SUBNETS}10.244.3.0-24`).value('{"PublicIP":"198.18.0.4","PublicIPv6":null}');
      await waitFor('the new lease', () => watcher!.leases().has('10.244.3.0-24'));
      await watcher.requestResync('test');
      expect(c.warnings).to.have.length(MALFORMED.length);
    });

    it('emits added, changed and removed as leases come, change and go', async () => {
      const { registry } = manager();
      const c = collect();
      watcher = new LeaseWatcher(registry, net16, c.hooks);
      await watcher.start();
      await admin.put(`${SUBNETS}10.244.5.0-24`).value('{"PublicIP":"198.18.0.5","PublicIPv6":null}');
      await admin.put(`${SUBNETS}10.244.5.0-24`).value('{"PublicIP":"198.18.0.6","PublicIPv6":null}');
      await admin.delete().key(`${SUBNETS}10.244.5.0-24`);
      await waitFor('three events', () => c.events.length >= 3);
      expect(c.events.map((e) => e.type)).to.deep.equal(['added', 'changed', 'removed']);
      expect(c.events[1].lease.attrs.publicIP).to.equal('198.18.0.6');
    });

    it('after losing etcd while others wrote and compacted, re-lists and converges to etcd\'s state', async () => {
      const proxy = await startTcpProxy(etcd.port);
      cleanups.push(() => proxy.close());
      await admin.put(`${SUBNETS}10.244.7.0-24`).value('{"PublicIP":"198.18.0.7","PublicIPv6":null}');
      await admin.put(`${SUBNETS}10.244.8.0-24`).value('{"PublicIP":"198.18.0.8","PublicIPv6":null}');
      const { registry } = manager({ endpoint: proxy.endpoint });
      const c = collect();
      const connectivity: boolean[] = [];
      const resyncs: string[] = [];
      watcher = new LeaseWatcher(registry, net16, {
        ...c.hooks,
        onConnectivity: (up) => connectivity.push(up),
        onResync: (why) => resyncs.push(why),
      });
      await watcher.start();
      proxy.cut();
      await sleep(300);
      // Another writer changes everything while this client is cut off…
      await admin.delete().key(`${SUBNETS}10.244.7.0-24`);
      await admin.put(`${SUBNETS}10.244.8.0-24`).value('{"PublicIP":"198.18.0.88","PublicIPv6":null}');
      await admin.put(`${SUBNETS}10.244.9.0-24`).value('{"PublicIP":"198.18.0.9","PublicIPv6":null}');
      // …and compacts the history the watcher would have resumed from.
      const rev = (await admin.kv.range({ key: Buffer.from('x') })).header.revision;
      await admin.kv.compact({ revision: rev, physical: true });
      proxy.restore();
      await waitFor('the watcher to converge', () => {
        const l = watcher!.leases();
        return !l.has('10.244.7.0-24') && l.get('10.244.8.0-24')?.attrs.publicIP === '198.18.0.88' && l.has('10.244.9.0-24');
      }, 30_000);
      // The state converges during the re-list; contact is declared once the new watch is up.
      await waitFor('the watcher to report contact again', () => connectivity.includes(true), 10_000);
      const types = c.events.map((e) => `${e.type} ${e.lease.key}`);
      expect(types).to.include.members(['removed 10.244.7.0-24', 'changed 10.244.8.0-24', 'added 10.244.9.0-24']);
      expect(types.filter((t) => t === 'added 10.244.9.0-24')).to.have.length(1);
      expect(connectivity).to.deep.equal([false, true]);
      expect(resyncs.length).to.be.lessThan(5);
    });
  });
});
