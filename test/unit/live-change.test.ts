import { expect } from 'chai';
import { parseNetworkConfig, type NetworkConfig } from '../../lib/config';
import { compareConfigs, type ConfigChange } from '../../lib/config/live-change';

const KNOWN = ['vxlan', 'udp', 'host-gw', 'ipip', 'alloc'];

function parse(config: object): NetworkConfig {
  return parseNetworkConfig(JSON.stringify(config), KNOWN);
}

function compare(running: object, next: object): ConfigChange {
  return compareConfigs(parse(running), parse(next));
}

function reasonOf(change: ConfigChange): string {
  expect(change.kind, JSON.stringify(change)).to.equal('refused');
  return change.kind === 'refused' ? change.reason : '';
}

const V4 = { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } };
const DUAL = { ...V4, EnableIPv6: true, IPv6Network: 'fc00::/48' };
const DUAL_LIMITS = { ...DUAL, IPv6SubnetLen: 64, IPv6SubnetMin: 'fc00:0:0:1::', IPv6SubnetMax: 'fc00:0:0:ff::' };

describe('compareConfigs: what a config change means to a running cluster', () => {
  describe('address plan changes are refused, naming the key and both values', () => {
    const cases: { key: string; running: object; next: object; from: string; to: string }[] = [
      { key: 'Network', running: V4, next: { ...V4, Network: '10.245.0.0/16' }, from: '"10.244.0.0/16"', to: '"10.245.0.0/16"' },
      { key: 'SubnetLen', running: V4, next: { ...V4, SubnetLen: 25 }, from: '24', to: '25' },
      { key: 'SubnetMin', running: V4, next: { ...V4, SubnetMin: '10.244.10.0' }, from: '"10.244.1.0"', to: '"10.244.10.0"' },
      { key: 'SubnetMax', running: V4, next: { ...V4, SubnetMax: '10.244.100.0' }, from: '"10.244.255.0"', to: '"10.244.100.0"' },
      { key: 'EnableIPv6', running: V4, next: DUAL, from: 'false', to: 'true' },
      { key: 'EnableIPv4', running: DUAL, next: { ...DUAL, EnableIPv4: false }, from: 'true', to: 'false' },
      { key: 'IPv6Network', running: DUAL, next: { ...DUAL, IPv6Network: 'fc00:1::/48' }, from: '"fc00::/48"', to: '"fc00:1::/48"' },
      { key: 'IPv6SubnetLen', running: DUAL_LIMITS, next: { ...DUAL_LIMITS, IPv6SubnetLen: 80, IPv6SubnetMin: undefined, IPv6SubnetMax: undefined }, from: '64', to: '80' },
      { key: 'IPv6SubnetMin', running: DUAL_LIMITS, next: { ...DUAL_LIMITS, IPv6SubnetMin: 'fc00:0:0:2::' }, from: '"fc00:0:0:1::"', to: '"fc00:0:0:2::"' },
      { key: 'IPv6SubnetMax', running: DUAL_LIMITS, next: { ...DUAL_LIMITS, IPv6SubnetMax: 'fc00:0:0:fe::' }, from: '"fc00:0:0:ff::"', to: '"fc00:0:0:fe::"' },
    ];
    for (const c of cases) {
      it(`${c.key}: ${c.from} → ${c.to}`, () => {
        const reason = reasonOf(compare(c.running, c.next));
        expect(reason).to.contain(`${c.key} would change from ${c.from} to ${c.to}`);
        expect(reason).to.contain('cannot be changed on a running cluster');
        expect(reason).to.contain('Put the old value back');
        expect(reason).to.contain('delete the subnet leases');
        expect(reason).to.contain('The running config stays in force');
      });
    }

    it('a new network does not also name the SubnetMin/SubnetMax defaults that move with it', () => {
      const reason = reasonOf(compare(V4, { ...V4, Network: '10.245.0.0/16' }));
      expect(reason).to.not.contain('SubnetMin');
      expect(reason).to.not.contain('SubnetMax');
    });

    it('switching a family on names only its Enable key, not the keys that follow from it', () => {
      const reason = reasonOf(compare(V4, DUAL));
      expect(reason).to.not.contain('IPv6Network');
      expect(reason).to.not.contain('IPv6SubnetLen');
    });

    it('names every changed key at once, and the backend type change does not hide them', () => {
      const reason = reasonOf(compare(V4, { Network: '10.245.0.0/16', SubnetLen: 26, Backend: { Type: 'host-gw' } }));
      expect(reason).to.contain('Network would change from "10.244.0.0/16" to "10.245.0.0/16"');
      expect(reason).to.contain('SubnetLen would change from 24 to 26');
      expect(reason).to.contain('Put the old values back');
    });

    it('compares effective values: writing out a default is no change', () => {
      const explicit = { ...V4, SubnetLen: 24, SubnetMin: '10.244.1.0', SubnetMax: '10.244.255.0', EnableIPv4: true, EnableIPv6: false };
      expect(compare(V4, explicit)).to.deep.equal({ kind: 'unchanged' });
    });

    it('keys of a family that is off in both configs do not count (they are ignored)', () => {
      expect(compare(V4, { ...V4, IPv6Network: 'fc00::/48' })).to.deep.equal({ kind: 'unchanged' });
    });

    it('an address written differently but equal is no change', () => {
      expect(compare(DUAL, { ...DUAL, IPv6Network: 'FC00:0000::/48' })).to.deep.equal({ kind: 'unchanged' });
    });
  });

  describe('backend settings of the same type are refused: migrate to another type and back', () => {
    const cases: { name: string; running: object; next: object; key: string; from: string; to: string }[] = [
      { name: 'a changed setting', running: { Type: 'vxlan', VNI: 1 }, next: { Type: 'vxlan', VNI: 2 }, key: 'Backend.VNI', from: '1', to: '2' },
      { name: 'an added setting', running: { Type: 'vxlan' }, next: { Type: 'vxlan', Port: 4789 }, key: 'Backend.Port', from: '(unset)', to: '4789' },
      { name: 'a removed setting', running: { Type: 'vxlan', DirectRouting: true }, next: { Type: 'vxlan' }, key: 'Backend.DirectRouting', from: 'true', to: '(unset)' },
      { name: 'a changed setting spelt differently', running: { Type: 'vxlan', VNI: 1 }, next: { type: 'VXLAN', vni: 3 }, key: 'Backend.vni', from: '1', to: '3' },
      { name: 'a string setting', running: { Type: 'ipip', Mode: 'kernel' }, next: { Type: 'ipip', Mode: 'userspace' }, key: 'Backend.Mode', from: '"kernel"', to: '"userspace"' },
      { name: 'a setting changed along with the Fallback', running: { Type: 'vxlan', VNI: 1 }, next: { Type: 'vxlan', VNI: 2, Fallback: 'udp' }, key: 'Backend.VNI', from: '1', to: '2' },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const reason = reasonOf(compare({ ...V4, Backend: c.running }, { ...V4, Backend: c.next }));
        expect(reason).to.contain(`${c.key} would change from ${c.from} to ${c.to}`);
        expect(reason).to.contain('cannot be changed on a running cluster');
        expect(reason).to.contain('agents apply backend changes by migrating');
        expect(reason).to.contain('migrate to another backend (change Backend.Type), then migrate back');
        expect(reason).to.contain('The running config stays in force');
      });
    }
  });

  describe('keys the backend applies in place (liveKeys) are a backend change, not a refusal', () => {
    const liveKeys = (type: string) => (type === 'vxlan' ? ['DirectRouting', 'MTU'] : []);
    it('vxlan DirectRouting switched on, spelt in any case', () => {
      const change = compareConfigs(parse({ ...V4, Backend: { Type: 'vxlan' } }), parse({ ...V4, Backend: { Type: 'vxlan', directrouting: true } }), { liveKeys });
      expect(change.kind).to.equal('backend');
    });
    it('a live key changed along with one that is not: still refused, naming only the other', () => {
      const reason = reasonOf(compareConfigs(parse({ ...V4, Backend: { Type: 'vxlan' } }), parse({ ...V4, Backend: { Type: 'vxlan', DirectRouting: true, VNI: 2 } }), { liveKeys }));
      expect(reason).to.contain('Backend.VNI would change').and.not.to.contain('DirectRouting');
    });
    it('a key live for vxlan is not live for ipip', () => {
      expect(compareConfigs(parse({ ...V4, Backend: { Type: 'ipip' } }), parse({ ...V4, Backend: { Type: 'ipip', DirectRouting: true } }), { liveKeys }).kind).to.equal('refused');
    });
  });

  describe('canonical comparison', () => {
    const same: { name: string; running: object; next: object }[] = [
      { name: 'the same config', running: V4, next: V4 },
      { name: 'top-level keys in another case', running: V4, next: { network: '10.244.0.0/16', BACKEND: { Type: 'vxlan' } } },
      { name: 'keys in another order', running: { ...V4, SubnetLen: 24, Backend: { Type: 'vxlan', VNI: 1, Port: 8472 } }, next: { Backend: { Port: 8472, VNI: 1, Type: 'vxlan' }, SubnetLen: 24, Network: '10.244.0.0/16' } },
      { name: 'backend setting names in another case', running: { ...V4, Backend: { Type: 'vxlan', VNI: 1, DirectRouting: true } }, next: { ...V4, Backend: { type: 'VXLAN', vni: 1, directrouting: true } } },
      { name: 'a null setting and an absent one', running: { ...V4, Backend: { Type: 'vxlan', VNI: null } }, next: V4 },
      { name: 'Fallback as a name and as an object naming the same type', running: { ...V4, Backend: { Type: 'vxlan', Fallback: 'UDP' } }, next: { ...V4, Backend: { Type: 'vxlan', fallback: { type: 'udp' } } } },
      { name: 'nested Fallback keys in another case and order', running: { ...V4, Backend: { Type: 'vxlan', Fallback: { Type: 'udp', Port: 8285 } } }, next: { ...V4, Backend: { Type: 'vxlan', Fallback: { port: 8285, TYPE: 'udp' } } } },
      { name: 'an unknown top-level key', running: V4, next: { ...V4, Comment: 'ignored' } },
    ];
    for (const c of same) {
      it(`unchanged: ${c.name}`, () => {
        expect(compare(c.running, c.next)).to.deep.equal({ kind: 'unchanged' });
      });
    }
  });

  describe('backend migrations', () => {
    it('a new Backend.Type is a backend change carrying both backends', () => {
      const running = parse({ ...V4, Backend: { Type: 'vxlan', VNI: 1 } });
      const next = parse({ ...V4, Backend: { Type: 'host-gw' } });
      expect(compareConfigs(running, next)).to.deep.equal({ kind: 'backend', from: running.backend, to: next.backend });
    });

    it('a new type with new settings is a backend change, not a refusal', () => {
      const change = compare({ ...V4, Backend: { Type: 'vxlan', VNI: 1 } }, { ...V4, Backend: { Type: 'ipip', Mode: 'userspace' } });
      expect(change.kind).to.equal('backend');
    });

    it('a missing Backend is udp: going to or from it is a type change', () => {
      expect(compare({ Network: '10.244.0.0/16' }, V4).kind).to.equal('backend');
      expect(compare({ Network: '10.244.0.0/16' }, { ...V4, Backend: { Type: 'udp' } })).to.deep.equal({ kind: 'unchanged' });
    });

    const fallbackOnly: { name: string; running: object; next: object }[] = [
      { name: 'a Fallback added', running: { Type: 'vxlan' }, next: { Type: 'vxlan', Fallback: 'udp' } },
      { name: 'a Fallback removed', running: { Type: 'vxlan', Fallback: 'udp' }, next: { Type: 'vxlan' } },
      { name: 'another Fallback type', running: { Type: 'vxlan', Fallback: 'udp' }, next: { Type: 'vxlan', fallback: 'host-gw' } },
      { name: 'new Fallback settings', running: { Type: 'vxlan', Fallback: { Type: 'udp', Port: 8285 } }, next: { Type: 'vxlan', Fallback: { Type: 'udp', Port: 8286 } } },
    ];
    for (const c of fallbackOnly) {
      it(`only the Fallback changed (${c.name}): a backend change`, () => {
        const running = parse({ ...V4, Backend: c.running });
        const next = parse({ ...V4, Backend: c.next });
        expect(compareConfigs(running, next)).to.deep.equal({ kind: 'backend', from: running.backend, to: next.backend });
      });
    }
  });
});
