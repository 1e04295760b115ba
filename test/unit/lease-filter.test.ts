/**
 * The one rule of which leases the agents accept (lib/subnet/lease-filter.ts):
 * the whole-listing answer, and the incremental table the watcher keeps,
 * which must always agree with it.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { parseNetworkConfig } from '../../lib/config';
import type { RawKV } from '../../lib/subnet/etcd-registry';
import { LeaseTable, filterLeases, peersOf, skipWarning, type LeaseChange } from '../../lib/subnet/lease-filter';

const config = parseNetworkConfig(JSON.stringify({
  Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', IPv6SubnetLen: 64, Backend: { Type: 'vxlan' },
}), ['vxlan']);
const VALUE = '{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';

function kv(key: string, createRevision: number, value = VALUE, modRevision = createRevision): RawKV {
  return { key, value, leaseId: '7', createRevision: BigInt(createRevision), modRevision: BigInt(modRevision) };
}

describe('lease filter', () => {
  it('accepts valid leases and names the fault of the others', () => {
    const r = filterLeases([kv('10.244.1.0-24', 1), kv('10.245.1.0-24', 2), kv('10.244.2.0-24', 3, '{'), kv('config', 4)], config);
    expect(r.accepted.map((l) => l.key)).to.deep.equal(['10.244.1.0-24']);
    expect(r.skipped.map((s) => s.raw.key)).to.deep.equal(['10.245.1.0-24', '10.244.2.0-24', 'config']);
    expect(r.skipped[0].reason).to.contain('outside the network 10.244.0.0/16');
  });

  it('gives a subnet claimed twice to the older key, whatever the listing order', () => {
    const dual = '10.244.1.0-24&fc00:0:0:1::-64';
    const r = filterLeases([kv('10.244.1.0-24', 9), kv(dual, 5)], config);
    expect(r.accepted.map((l) => l.key)).to.deep.equal([dual]);
    expect(skipWarning(r.skipped[0])).to.equal(
      `skipping lease "10.244.1.0-24": its subnet is already claimed by the older lease ${JSON.stringify(dual)}`);
  });

  it('frees a subnet for the younger key when the older one goes or turns invalid', () => {
    const table = new LeaseTable(config);
    const dual = '10.244.1.0-24&fc00:0:0:1::-64';
    table.apply([{ type: 'put', raw: kv(dual, 1) }, { type: 'put', raw: kv('10.244.1.0-24', 2) }]);
    expect([...table.leases().keys()]).to.deep.equal([dual]);
    const { events } = table.apply([{ type: 'put', raw: kv(dual, 1, 'garbage', 3) }]);
    expect(events.map((e) => `${e.type} ${e.lease.key}`).sort()).to.deep.equal([`added 10.244.1.0-24`, `removed ${dual}`]);
  });

  it('reports a lease created and deleted in one batch as added, then removed', () => {
    const table = new LeaseTable(config);
    const { events } = table.apply([{ type: 'put', raw: kv('10.244.1.0-24', 1) }, { type: 'delete', key: '10.244.1.0-24' }]);
    expect(events.map((e) => e.type)).to.deep.equal(['added', 'removed']);
  });

  it('peers are the accepted leases but the own one', () => {
    const { accepted } = filterLeases([kv('10.244.1.0-24', 1), kv('10.244.2.0-24', 2)], config);
    expect(peersOf(accepted, '10.244.1.0-24').map((l) => l.key)).to.deep.equal(['10.244.2.0-24']);
  });

  it('the incremental table always accepts what a fresh listing would', () => {
    const keys = ['10.244.1.0-24', '10.244.1.0-24&fc00:0:0:1::-64', '10.244.2.0-24&fc00:0:0:1::-64', '10.244.2.0-24', '10.244.3.0-24&fc00:0:0:2::-64'];
    const change = fc.record({
      key: fc.constantFrom(...keys),
      del: fc.boolean(),
      bad: fc.boolean(),
    });
    fc.assert(fc.property(fc.array(fc.array(change, { minLength: 1, maxLength: 4 }), { maxLength: 12 }), (batches) => {
      const table = new LeaseTable(config);
      const store = new Map<string, RawKV>();
      const held = new Map<string, string>();
      let revision = 0;
      for (const batch of batches) {
        const changes: LeaseChange[] = [];
        for (const c of batch) {
          revision++;
          if (c.del) {
            store.delete(c.key);
            changes.push({ type: 'delete', key: c.key });
          } else {
            const created = store.get(c.key)?.createRevision ?? BigInt(revision);
            const raw: RawKV = { ...kv(c.key, 0, c.bad ? '{' : VALUE), createRevision: created, modRevision: BigInt(revision) };
            store.set(c.key, raw);
            changes.push({ type: 'put', raw });
          }
        }
        const { events } = table.apply(changes);
        for (const ev of events) {
          if (ev.type === 'removed') held.delete(ev.lease.key);
          else held.set(ev.lease.key, ev.lease.modRevision.toString());
        }
        const fresh = filterLeases([...store.values()], config).accepted;
        expect([...table.leases().keys()].sort()).to.deep.equal(fresh.map((l) => l.key).sort());
        expect([...held.keys()].sort(), 'the events add up to the state').to.deep.equal(fresh.map((l) => l.key).sort());
      }
    }), { seed: 42, numRuns: 300 });
  });
});
