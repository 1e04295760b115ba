/**
 * Backend instances (backends/instance.ts, backends/assignment.ts): how two
 * settings of one backend type are told apart in leases, and which one a
 * node uses to reach a peer — the rule agents, `twill status` and
 * `twill migrate` share.
 */
import { expect } from 'chai';
import {
  chooseBackend, instanceKey, instanceOf, liveChangeOptions, preferenceOrder, terminatedBy,
} from '../../backends';
import { compareConfigs } from '../../lib/config/live-change';
import { advertisedInstances, leaseAttrsFor } from '../../lib/agent/advertisement';
import { parseNetworkConfig } from '../../lib/config';
import { decodeLeaseAttrs, encodeLeaseAttrs, LeaseFormatError } from '../../lib/subnet';
import type { LeaseAttrs } from '../../lib/subnet';

const TYPES = ['alloc', 'host-gw', 'ipip', 'udp', 'vxlan'];
const config = (backend: object) => parseNetworkConfig(JSON.stringify({ Network: '10.244.0.0/16', Backend: backend }), TYPES);
const attrs = (extra: Partial<LeaseAttrs>): LeaseAttrs => ({ publicIP: '198.18.0.2', publicIPv6: null, ...extra });

describe('backend instances', () => {
  describe('instance keys', () => {
    it('are the type alone for flanneld\'s defaults, written out or not', () => {
      expect(instanceOf(config({ Type: 'vxlan' }).backend).key).to.equal('vxlan');
      expect(instanceOf(config({ Type: 'vxlan', VNI: 1, Port: 8472, GBP: false, DirectRouting: true }).backend).key).to.equal('vxlan');
      expect(instanceOf(config({ Type: 'udp', Port: 8285 }).backend).key).to.equal('udp');
      expect(instanceOf(config({ Type: 'ipip', Mode: 'userspace' }).backend).key, 'ipip Mode is local: same wire').to.equal('ipip');
    });

    it('name the settings peers must match, in one order', () => {
      expect(instanceOf(config({ Type: 'vxlan', Port: 4789, VNI: 2 }).backend).key).to.equal('vxlan{Port=4789,VNI=2}');
      expect(instanceOf(config({ Type: 'vxlan', gbp: true }).backend).key).to.equal('vxlan{GBP=true}');
      expect(instanceOf(config({ Type: 'udp', Port: 8300 }).backend).key).to.equal('udp{Port=8300}');
      expect(preferenceOrder(config({ Type: 'host-gw', Fallback: { Type: 'vxlan', VNI: 5 } }).backend)).to.deep.equal(['host-gw', 'vxlan{VNI=5}']);
    });
  });

  describe('what a lease terminates', () => {
    it('reads the TwillBackends entries with their Settings', () => {
      const a = attrs({ backendType: 'vxlan', backendData: { VNI: 2, VtepMAC: '0e:02:c6:12:00:02' }, backends: [
        { type: 'vxlan', settings: { VNI: 2 }, data: { VNI: 2, VtepMAC: '0e:02:c6:12:00:02' } },
        { type: 'vxlan', data: { VNI: 1, VtepMAC: '0e:01:c6:12:00:02' } },
      ] });
      expect(terminatedBy(a)).to.deep.equal(['vxlan{VNI=2}', 'vxlan']);
    });

    it('reads a bare vxlan lease\'s VNI from BackendData, as flanneld publishes it', () => {
      expect(terminatedBy(attrs({ backendType: 'vxlan', backendData: { VNI: 7, VtepMAC: '0e:07:c6:12:00:02' } }))).to.deep.equal(['vxlan{VNI=7}']);
      expect(terminatedBy(attrs({ backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '0e:01:c6:12:00:02' } }))).to.deep.equal(['vxlan']);
      expect(terminatedBy(attrs({}))).to.deep.equal(['udp']);
    });

    it('takes a bare lease from a flanneld node run with a non-default Port as the one local instance that agrees with what it tells', () => {
      const flanneld = attrs({ backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '0e:01:c6:12:00:02' } });
      expect(terminatedBy(flanneld, ['vxlan{Port=4789}'])).to.deep.equal(['vxlan{Port=4789}']);
      // The VNI it tells must agree; and with two candidates nothing is guessed.
      expect(terminatedBy(flanneld, ['vxlan{Port=4789,VNI=2}'])).to.deep.equal(['vxlan']);
      expect(terminatedBy(flanneld, ['vxlan{Port=4789}', 'vxlan{GBP=true}'])).to.deep.equal(['vxlan']);
      expect(terminatedBy(flanneld, ['vxlan{Port=4789}', 'vxlan'])).to.deep.equal(['vxlan']);
    });

    it('carries a peer over the target instance once both run it, over the old one before', () => {
      const order = ['vxlan{VNI=2}'];
      expect(chooseBackend(order, ['vxlan{VNI=2}', 'vxlan'], ['vxlan'])).to.equal('vxlan');
      expect(chooseBackend(order, ['vxlan{VNI=2}', 'vxlan'], ['vxlan{VNI=2}', 'vxlan'])).to.equal('vxlan{VNI=2}');
      expect(chooseBackend(order, ['vxlan{VNI=2}'], ['vxlan'])).to.equal(undefined);
    });
  });

  describe('lease codec: TwillBackends[].Settings', () => {
    it('writes Settings between Type and Data, only when there are any, and reads them back', () => {
      const a = attrs({ backendType: 'udp', backends: [{ type: 'udp', settings: { Port: 8300 } }, { type: 'udp' }] });
      const text = encodeLeaseAttrs(a);
      expect(text).to.equal('{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"udp","TwillBackends":[{"Type":"udp","Settings":{"Port":8300}},{"Type":"udp"}]}');
      expect(decodeLeaseAttrs(text).backends).to.deep.equal([{ type: 'udp', settings: { Port: 8300 } }, { type: 'udp' }]);
    });

    for (const [name, settings] of [['a list', '[1]'], ['a nested object', '{"Port":{"x":1}}'], ['a null value', '{"Port":null}'], ['a bad key', '{"a b":1}']] as const) {
      it(`refuses Settings that is ${name}, naming TwillBackends`, () => {
        const text = `{"PublicIP":"198.18.0.2","PublicIPv6":null,"TwillBackends":[{"Type":"udp","Settings":${settings}}]}`;
        expect(() => decodeLeaseAttrs(text)).to.throw(LeaseFormatError, /TwillBackends entry for udp: Settings must be an object/);
      });
    }
  });

  describe('a change of settings on a running cluster (liveChangeOptions)', () => {
    const compare = (from: object, to: object) => compareConfigs(config(from), config(to), liveChangeOptions);

    it('migrates on a new vxlan VNI or Port, or a new udp Port', () => {
      for (const [from, to] of [
        [{ Type: 'vxlan' }, { Type: 'vxlan', VNI: 2 }],
        [{ Type: 'vxlan', VNI: 2 }, { Type: 'vxlan', VNI: 2, Port: 4789 }],
        [{ Type: 'vxlan' }, { Type: 'vxlan', Port: 4789, GBP: true }],
        [{ Type: 'udp' }, { Type: 'udp', Port: 8300 }],
      ]) {
        expect(compare(from, to).kind, `${JSON.stringify(from)} -> ${JSON.stringify(to)}`).to.equal('backend');
      }
    });

    it('applies vxlan Learning and ipip Mode and DirectRouting in place', () => {
      for (const [from, to] of [
        [{ Type: 'vxlan' }, { Type: 'vxlan', Learning: true }],
        [{ Type: 'ipip' }, { Type: 'ipip', Mode: 'userspace' }],
        [{ Type: 'ipip' }, { Type: 'ipip', DirectRouting: true }],
      ]) {
        const change = compare(from, to);
        expect(change.kind).to.equal('backend');
        if (change.kind === 'backend') expect(instanceOf(change.from).key).to.equal(instanceOf(change.to).key);
      }
    });

    it('refuses GBP changed alone, saying why and what to change with it', () => {
      const change = compare({ Type: 'vxlan' }, { Type: 'vxlan', GBP: true });
      expect(change.kind).to.equal('refused');
      if (change.kind === 'refused') {
        expect(change.reason).to.contain('Backend.GBP would change from (unset) to true');
        expect(change.reason).to.contain('cannot run with GBP off and on at once');
        expect(change.reason).to.contain('change Backend.Port or Backend.VNI together with Backend.GBP');
      }
    });

    it('keeps instanceKey consistent with what the agents publish', () => {
      expect(instanceKey('vxlan', { VNI: 2, Port: 4789 })).to.equal('vxlan{Port=4789,VNI=2}');
      // The order earlier releases published (they sorted with localeCompare): nodes of both compare keys.
      expect(instanceKey('vxlan', { VNI: 3, Port: 4790, GBP: true })).to.equal('vxlan{GBP=true,Port=4790,VNI=3}');
    });
  });
});

describe('what a lease advertises while a live config change starts a backend', () => {
  const vxlan = { key: 'vxlan', config: { type: 'vxlan', settings: {} }, backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' } };
  const hostGw = { key: 'host-gw', config: { type: 'host-gw', settings: {} } };
  const udp8300 = { key: 'udp/Port=8300', config: { type: 'udp', settings: { Port: 8300 } } };

  it('leaves out a backend not yet planned, and names the type the lease still carries as BackendType', () => {
    const { configuredType, instances } = advertisedInstances('host-gw', [
      { ...hostGw, withdrawn: false, planned: false },
      { ...vxlan, withdrawn: false, planned: true },
    ]);
    expect(instances.map((i) => i.key)).to.deep.equal(['vxlan']);
    const attrs = leaseAttrsFor('198.18.0.1', undefined, configuredType, instances);
    // Without TwillBackends, peers read BackendType: it must not claim host-gw before host-gw is ready.
    expect(attrs.backendType).to.equal('vxlan');
    expect(attrs.backendData).to.deep.equal(vxlan.backendData);
    expect(attrs.backends).to.equal(undefined);
  });

  it('lists it once its first plan was applied, the configured type first', () => {
    const { configuredType, instances } = advertisedInstances('host-gw', [
      { ...hostGw, withdrawn: false, planned: true },
      { ...vxlan, withdrawn: false, planned: true },
    ]);
    const attrs = leaseAttrsFor('198.18.0.1', undefined, configuredType, instances);
    expect(attrs.backendType).to.equal('host-gw');
    expect(attrs.backends?.map((b) => b.type)).to.deep.equal(['host-gw', 'vxlan']);
  });

  it('a udp Port migration: the new port appears only when planned; a withdrawn one never', () => {
    const udp = { key: 'udp', config: { type: 'udp', settings: {} } };
    const before = advertisedInstances('udp', [{ ...udp, withdrawn: false, planned: false }, { ...udp8300, withdrawn: false, planned: true }]);
    expect(before.instances.map((i) => i.key)).to.deep.equal(['udp/Port=8300']);
    const after = advertisedInstances('udp', [{ ...udp, withdrawn: false, planned: true }, { ...udp8300, withdrawn: true, planned: true }]);
    expect(after.instances.map((i) => i.key)).to.deep.equal(['udp']);
  });
});
