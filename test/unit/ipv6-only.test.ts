/**
 * IPv6-only networks in etcd mode (issue 14): flanneld's `0.0.0.0-0&...`
 * key and "0.0.0.0" PublicIP, subnet.env without the IPv4 pair, the CNI
 * giving pods IPv6 alone, and the rule that an IPv6-only lease's empty IPv4
 * part is never routed (it would be a default route) nor taken as a
 * subnet two leases share. No kernel, no etcd; the byte-exact expectations
 * are flanneld's (test/unit/fixtures/flanneld-ipv6-only/README.md).
 */
import { expect } from 'chai';
import { refusedWith } from './refused-with';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { IPNet } from '../../lib/ip';
import { ConfigError, parseNetworkConfig } from '../../lib/config';
import {
  LeaseFormatError,
  carriesIPv4,
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  filterLeases,
  formatSubnetFile,
  formatSubnetKey,
  leaseFromRaw,
  parseSubnetKey,
  type Lease,
  type LeaseAttrs,
  type RawKV,
} from '../../lib/subnet';
import { familyMismatch } from '../../lib/subnet/lease-keeper';
import { leaseAttrsFor } from '../../lib/agent/advertisement';
import { parseNetworkConfigText } from '../../lib/agent/config-source';
import { guardPeers, planGuard } from '../../lib/guard/plan';
import { vxlanIntake } from '../../backends/intake';
import { readSubnetEnv } from '../../lib/cni/subnet-env';
import { buildDelegateConf, delegateSubnets } from '../../lib/cni/delegate-conf';
import { parseNetConf } from '../../lib/cni/net-conf';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import { KNOWN_BACKEND_TYPES, assignPeers, assignedTo, backendFactory, type KernelState, type LocalNode } from '../../backends';

const FIXTURES = path.resolve(__dirname, '../../../test/unit/fixtures/flanneld-ipv6-only');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

const V6ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } };
const v6Config = (over: Record<string, unknown> = {}) => parseNetworkConfig(JSON.stringify({ ...V6ONLY, ...over }), KNOWN_BACKEND_TYPES);
const DUAL = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } };
const dualConfig = () => parseNetworkConfig(JSON.stringify(DUAL), KNOWN_BACKEND_TYPES);

const raw = (key: string, value = fixture('lease-vxlan.json'), createRevision = 5n): RawKV => ({ key, value, leaseId: '7', modRevision: createRevision, createRevision });

describe('IPv6-only networks (etcd mode)', () => {
  describe("flanneld's lease key and value", () => {
    it('writes and reads the key 0.0.0.0-0&fd00:10:244:1::-64 (MakeSubnetKey with an empty IPv4 subnet)', () => {
      const key = parseSubnetKey(fixture('key.txt'));
      expect(carriesIPv4(key)).to.equal(false);
      expect(key.ipv6Subnet?.toString()).to.equal('fd00:10:244:1::/64');
      expect(formatSubnetKey(key)).to.equal(fixture('key.txt'));
    });

    for (const file of ['lease-vxlan.json', 'lease-host-gw.json']) {
      it(`decodes ${file} (PublicIP "0.0.0.0") and re-encodes it byte for byte`, () => {
        expect(encodeLeaseAttrs(decodeLeaseAttrs(fixture(file)))).to.equal(fixture(file));
      });
    }

    it("publishes a vxlan node's attributes as flanneld does: PublicIP 0.0.0.0 and BackendV6Data alone", () => {
      const attrs = leaseAttrsFor('0.0.0.0', 'fd00:198:18::3', 'vxlan', [{ key: 'vxlan', config: { type: 'vxlan', settings: {} }, backendV6Data: { VNI: 1, VtepMAC: '6a:1f:0c:33:9d:12' } }]);
      expect(encodeLeaseAttrs(attrs)).to.equal(fixture('lease-vxlan.json'));
    });
  });

  describe('subnet.env', () => {
    it('carries only the IPv6 pair, MTU and IPMASQ, byte for byte as flanneld writes them with EnableIPv4 false', () => {
      const text = formatSubnetFile({ ipv6Network: IPNet.parse('fd00:10:244::/56'), ipv6Subnet: IPNet.parse('fd00:10:244:1::/64'), mtu: 1430, ipMasq: false });
      expect(text).to.equal(fixture('subnet.env'));
    });

    it('gives pods an IPv6 range and IPv6 routes only through the CNI plugin', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-v6only-'));
      try {
        const file = path.join(dir, 'subnet.env');
        writeFileSync(file, fixture('subnet.env'));
        const env = await readSubnetEnv(file);
        const conf = buildDelegateConf(parseNetConf({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel' }), env);
        expect(delegateSubnets(conf)).to.deep.equal(['fd00:10:244:1::/64']);
        expect(JSON.stringify(conf)).to.not.match(/\d+\.\d+\.\d+\.\d+\//);
        expect(conf.mtu).to.equal(1430);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('the network config', () => {
    it('is accepted with EnableIPv4 false, an IPv6Network and vxlan or host-gw', () => {
      for (const type of ['vxlan', 'host-gw']) {
        const c = parseNetworkConfigText(JSON.stringify({ ...V6ONLY, Backend: { Type: type } }));
        expect({ v4: c.enableIPv4, network: c.network, v6: c.ipv6Network?.toString() }).to.deep.equal({ v4: false, network: undefined, v6: 'fd00:10:244::/56' });
      }
    });

    it('is refused with EnableIPv4 false and no IPv6Network, naming IPv6Network', () => {
      const err = refusedWith(ConfigError, () => parseNetworkConfigText(JSON.stringify({ EnableIPv4: false, EnableIPv6: true, Backend: { Type: 'vxlan' } })));
      expect(err.field).to.equal('IPv6Network');
      expect(err.message).to.include('missing');
    });

    it('is refused with EnableIPv4 false and EnableIPv6 absent (no family left), naming EnableIPv4', () => {
      const err = refusedWith(ConfigError, () => parseNetworkConfigText(JSON.stringify({ EnableIPv4: false, IPv6Network: 'fd00:10:244::/56' })));
      expect(err.field).to.equal('EnableIPv4');
    });

    for (const type of ['wireguard', 'bgp', 'udp', 'ipip']) {
      it(`is refused with the ${type} backend, which routes no IPv6 here, naming Backend.Type`, () => {
        const err = refusedWith(ConfigError, () => parseNetworkConfigText(JSON.stringify({ ...V6ONLY, Backend: { Type: type } })));
        expect(err.field).to.equal('Backend.Type');
        expect(err.message).to.include(type);
      });
    }

    it('warns once that a Network given while EnableIPv4 is false is ignored', () => {
      expect(v6Config({ Network: '10.244.0.0/16' }).warnings).to.deep.equal(['Network is ignored because EnableIPv4 is false']);
    });
  });

  describe("another node's lease", () => {
    it('is accepted as an IPv6-only lease with its PublicIPv6', () => {
      const lease = leaseFromRaw(raw('0.0.0.0-0&fd00:10:244:2::-64'), v6Config());
      expect(lease.ipv6Subnet?.toString()).to.equal('fd00:10:244:2::/64');
      expect(carriesIPv4(lease)).to.equal(false);
      expect(lease.attrs.publicIPv6).to.equal('fd00:198:18::3');
    });

    const bad: { name: string; key: string; config: () => ReturnType<typeof v6Config>; says: string[] }[] = [
      { name: 'a key without its & part (0.0.0.0-0 alone)', key: '0.0.0.0-0', config: () => v6Config(), says: ['"0.0.0.0-0"', 'holds no subnet', '0.0.0.0-0&'] },
      { name: 'an IPv4-only key in an IPv6-only network', key: '10.244.2.0-24', config: () => v6Config(), says: ['10.244.2.0/24', 'no IPv6 subnet', 'EnableIPv4 is false'] },
      { name: 'an IPv6-only key in a dual-stack network', key: '0.0.0.0-0&fd00:10:244:2::-64', config: dualConfig, says: ['IPv6-only lease', 'EnableIPv4 is true'] },
      { name: 'an IPv6 subnet outside IPv6Network', key: '0.0.0.0-0&fd00:99::-64', config: () => v6Config(), says: ['fd00:99::/64', 'outside the IPv6 network'] },
      { name: 'a non-empty /0 IPv4 part', key: '10.0.0.0-0&fd00:10:244:2::-64', config: () => v6Config(), says: ['10.0.0.0'] },
    ];
    for (const b of bad) {
      it(`is refused, naming the fault, with ${b.name}`, () => {
        const err = refusedWith(LeaseFormatError, () => leaseFromRaw(raw(b.key), b.config()));
        for (const s of b.says) expect(err.message).to.include(s);
      });
    }

    it('never collides with another IPv6-only lease over the shared empty IPv4 part', () => {
      const kvs = [2, 3, 4].map((n) => raw(`0.0.0.0-0&fd00:10:244:${n}::-64`, fixture('lease-vxlan.json').replace('::3', `::${n}`), BigInt(n)));
      const { accepted, skipped } = filterLeases(kvs, v6Config());
      expect(accepted.map((l) => l.key)).to.deep.equal(kvs.map((k) => k.key));
      expect(skipped).to.deep.equal([]);
    });

    it('still loses to an older lease of the same IPv6 subnet', () => {
      const kvs = [raw('0.0.0.0-0&fd00:10:244:2::-64', fixture('lease-vxlan.json'), 1n), raw('10.244.9.0-24&fd00:10:244:2::-64', fixture('lease-vxlan.json'), 2n)];
      const { accepted, skipped } = filterLeases(kvs, v6Config());
      expect(accepted.map((l) => l.key)).to.deep.equal(['0.0.0.0-0&fd00:10:244:2::-64']);
      expect(skipped[0].reason).to.include('already claimed');
    });
  });

  describe('the own lease on restart', () => {
    it('is reused when it is IPv6-only, and given up when it holds an IPv4 subnet or lacks the IPv6 one', () => {
      expect(familyMismatch(raw('0.0.0.0-0&fd00:10:244:2::-64'), v6Config())).to.equal(undefined);
      expect(familyMismatch(raw('10.244.2.0-24&fd00:10:244:2::-64'), v6Config())).to.include('EnableIPv4 is false but the lease has an IPv4 subnet');
      expect(familyMismatch(raw('0.0.0.0-0&fd00:10:244:2::-64'), dualConfig())).to.include('EnableIPv4 is true but the lease has no IPv4 subnet');
    });
  });

  describe('planning', () => {
    const NO_KERNEL = new Proxy({}, { get: () => () => { throw new Error('a planner called netlink'); } }) as unknown as Netlink;
    const QUIET = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
    const local: LocalNode = { extIface: { name: 'eth0', index: 2, mtu: 1500, ipv6: 'fd00:198:18::1' }, publicIP: '0.0.0.0', publicIPv6: 'fd00:198:18::1' };
    const flannelV6 = { name: 'flannel-v6.1', index: 8, mac: '1e:01:00:00:00:01', mtu: 1430, up: true } as LinkInfo;
    const lease = (n: number, type: string, attrs: Partial<LeaseAttrs> = {}): Lease => ({
      key: `0.0.0.0-0&fd00:10:244:${n}::-64`,
      subnet: IPNet.parse('0.0.0.0/0'),
      ipv6Subnet: IPNet.parse(`fd00:10:244:${n}::/64`),
      modRevision: 1n,
      attrs: {
        publicIP: '0.0.0.0', publicIPv6: `fd00:198:18::${n}`, backendType: type,
        ...(type === 'vxlan' ? { backendV6Data: { VNI: 1, VtepMAC: `1e:01:00:00:00:0${n}` } } : {}), ...attrs,
      },
    });
    const plan = (type: string, peers: Lease[], opts: { reach?: (ip: string) => boolean; settings?: Record<string, unknown> } = {}): KernelState => {
      const own = lease(1, type);
      const backend = backendFactory(type).create({ type, settings: opts.settings ?? {} }, { log: QUIET, netlink: NO_KERNEL });
      const reach = opts.reach ?? (() => true);
      const a = assignPeers({ order: [type], running: [type], own, leases: peers, reach, whyNotReached: () => 'not on the link' });
      return backend.desired({ local, own, ipv6Device: type === 'vxlan' ? flannelV6 : undefined, reach, siblings: 0 }, assignedTo(a, type, new Map()));
    };
    const show = (r: { dst: string; gateway?: string; dev: string; onlink: boolean }) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? ' onlink' : ''}`;

    it("vxlan: plans only flannel-v6.1, each peer's IPv6 entries, and no IPv4 route at all (no 0.0.0.0/0)", () => {
      const state = plan('vxlan', [lease(2, 'vxlan'), lease(3, 'vxlan')]);
      expect(state.devices.map((d) => d.name)).to.deep.equal(['flannel-v6.1']);
      expect(state.devices[0]).to.deep.include({ family: 6, addresses: ['fd00:10:244:1::/128'] });
      expect(state.devices[0].fdb?.map((f) => `${f.mac} dst ${f.dst}`)).to.deep.equal(['1e:01:00:00:00:02 dst fd00:198:18::2', '1e:01:00:00:00:03 dst fd00:198:18::3']);
      expect(state.routes.map(show)).to.deep.equal([
        'fd00:10:244:2::/64 via fe80::1c01:ff:fe00:2 dev flannel-v6.1',
        'fd00:10:244:3::/64 via fe80::1c01:ff:fe00:3 dev flannel-v6.1',
      ]);
      expect(state.skipped).to.deep.equal([]);
    });

    it('vxlan DirectRouting: a peer whose PublicIPv6 is on the link gets a plain IPv6 route, decided by its IPv6 reachability', () => {
      const asked: string[] = [];
      const state = plan('vxlan', [lease(2, 'vxlan'), lease(3, 'vxlan')], {
        settings: { DirectRouting: true },
        reach: (ip) => {
          asked.push(ip);
          return ip === 'fd00:198:18::2';
        },
      });
      expect(state.routes.map(show)).to.deep.equal([
        'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0',
        'fd00:10:244:3::/64 via fe80::1c01:ff:fe00:3 dev flannel-v6.1',
      ]);
      expect(asked).to.include('fd00:198:18::2');
      expect(asked).to.not.include('0.0.0.0');
    });

    it('host-gw: routes each peer\'s IPv6 subnet via its PublicIPv6 and nothing to 0.0.0.0/0', () => {
      const state = plan('host-gw', [lease(2, 'host-gw'), lease(3, 'host-gw')]);
      expect(state.routes.map(show)).to.deep.equal(['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0', 'fd00:10:244:3::/64 via fd00:198:18::3 dev eth0']);
      expect(state.devices).to.deep.equal([]);
    });

    it('host-gw: carries a peer only when its PublicIPv6 is reachable on the link, saying why not', () => {
      const state = plan('host-gw', [lease(2, 'host-gw'), lease(3, 'host-gw')], { reach: (ip) => ip === 'fd00:198:18::2' });
      expect(state.routes.map(show)).to.deep.equal(['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0']);
      const own = lease(1, 'host-gw');
      const a = assignPeers({ order: ['host-gw'], running: ['host-gw'], own, leases: [lease(3, 'host-gw')], reach: () => false, whyNotReached: (ip) => `${ip} not on the link` });
      expect(a.skipped).to.deep.equal([
        'peer fd00:10:244:3::/64 (fd00:198:18::3) terminates host-gw; this node runs host-gw; host-gw cannot reach it (fd00:198:18::3 not on the link): give host-gw a Fallback (e.g. "Fallback": "vxlan") to carry such peers',
      ]);
    });

    it('takes peers that all publish PublicIP 0.0.0.0 as distinct nodes, by PublicIPv6, and refuses one claiming this node\'s PublicIPv6', () => {
      const own = lease(1, 'vxlan');
      const a = assignPeers({ order: ['vxlan'], running: ['vxlan'], own, leases: [lease(2, 'vxlan'), lease(9, 'vxlan', { publicIPv6: 'fd00:198:18::1' }), lease(8, 'vxlan', { publicIPv6: null })], reach: () => true, whyNotReached: () => '' });
      expect(a.carried.get('vxlan')?.map((p) => p.key)).to.deep.equal(['0.0.0.0-0&fd00:10:244:2::-64']);
      expect(a.skipped).to.deep.equal([
        "peer fd00:10:244:9::/64 claims this node's own public IP fd00:198:18::1; ignoring it",
        'peer fd00:10:244:8::/64 publishes no public IP; ignoring it',
      ]);
    });

    it('guards IPv6-only peers in the IPv6 table only, never admitting 0.0.0.0/0', () => {
      const peers = guardPeers(lease(1, 'vxlan'), [lease(2, 'vxlan')]);
      expect(peers.map((p) => p.subnet)).to.deep.equal([undefined]);
      expect(planGuard(peers, [vxlanIntake(8472)], 4)!.peers, 'the IPv4 table').to.deep.equal([]);
      const v6 = planGuard(peers, [vxlanIntake(8472, 6)], 6)!;
      expect(v6.peers).to.deep.equal(['fd00:198:18::2']);
      expect(v6.otherSubnets, 'no IPv4 inner source is allowed from it').to.deep.equal([]);
      expect(v6.skipped).to.deep.equal([]);
    });
  });
});
