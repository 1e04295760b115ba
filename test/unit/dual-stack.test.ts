/**
 * Dual stack in etcd mode (issue 14, first slice): the lease key and value,
 * subnet.env, the published PublicIPv6, host-gw's IPv6 routes and the
 * refusals, all without a kernel or an etcd. The byte-exact expectations
 * are flanneld's (test/unit/fixtures/flanneld-dual-stack/README.md).
 */
import { expect } from 'chai';
import { refusedWith } from './refused-with';
import { readFileSync } from 'fs';
import * as path from 'path';
import { IPNet } from '../../lib/ip';
import { ConfigError, parseNetworkConfig } from '../../lib/config';
import {
  LeaseFormatError,
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  formatSubnetFile,
  formatSubnetKey,
  leaseFromRaw,
  parseSubnetFile,
  parseSubnetKey,
  type Lease,
  type LeaseAttrs,
} from '../../lib/subnet';
import { familyMismatch } from '../../lib/subnet/lease-keeper';
import { leaseAttrsFor } from '../../lib/agent/advertisement';
import { parseNetworkConfigText } from '../../lib/agent/config-source';
import { InterfaceSelectionError, selectInterface, type SystemView } from '../../lib/iface';
import { parseDaemonFlags } from '../../cmd/flags';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import { KNOWN_BACKEND_TYPES, assignPeers, backendV6DataOf, ipv6NotCarriedWarning, assignedTo, backendFactory, diffKernelState, type LocalNode, type PlanInput } from '../../backends';

const FIXTURES = path.resolve(__dirname, '../../../test/unit/fixtures/flanneld-dual-stack');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

const DUAL = {
  Network: '10.244.0.0/16',
  EnableIPv6: true,
  IPv6Network: 'fd00:10:244::/56',
  Backend: { Type: 'host-gw' },
};
const dualConfig = (over: Record<string, unknown> = {}) => parseNetworkConfig(JSON.stringify({ ...DUAL, ...over }), KNOWN_BACKEND_TYPES);

describe('dual stack (etcd mode)', () => {
  describe("flanneld's lease key and value", () => {
    it('writes and reads the key 10.244.1.0-24&fd00:10:244:1::-64', () => {
      const key = { subnet: IPNet.parse('10.244.1.0/24'), ipv6Subnet: IPNet.parse('fd00:10:244:1::/64') };
      expect(formatSubnetKey(key)).to.equal('10.244.1.0-24&fd00:10:244:1::-64');
      const back = parseSubnetKey('10.244.1.0-24&fd00:10:244:1::-64');
      expect(back.subnet.toString()).to.equal('10.244.1.0/24');
      expect(back.ipv6Subnet?.toString()).to.equal('fd00:10:244:1::/64');
    });

    for (const file of ['lease-host-gw.json', 'lease-vxlan.json', 'lease-udp-shape.json']) {
      it(`decodes ${file} and re-encodes it byte for byte`, () => {
        const bytes = fixture(file);
        const attrs = decodeLeaseAttrs(bytes);
        expect(attrs.publicIPv6).to.equal('fd00:198:18::3');
        expect(encodeLeaseAttrs(attrs)).to.equal(bytes);
      });
    }

    it('reads BackendV6Data of a vxlan lease', () => {
      expect(decodeLeaseAttrs(fixture('lease-vxlan.json')).backendV6Data).to.deep.equal({ VNI: 1, VtepMAC: '6a:1f:0c:33:9d:12' });
    });

    it('publishes a host-gw node\'s attributes as flanneld does, PublicIPv6 included', () => {
      const attrs = leaseAttrsFor('198.18.0.3', 'fd00:198:18::3', 'host-gw', [{ key: 'host-gw', config: { type: 'host-gw', settings: {} } }]);
      expect(encodeLeaseAttrs(attrs)).to.equal(fixture('lease-host-gw.json'));
    });

    it('publishes PublicIPv6 null when the network carries no IPv6', () => {
      const attrs = leaseAttrsFor('198.18.0.3', undefined, 'host-gw', [{ key: 'host-gw', config: { type: 'host-gw', settings: {} } }]);
      expect(encodeLeaseAttrs(attrs)).to.equal('{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"host-gw"}');
    });
  });

  describe('subnet.env', () => {
    it('carries FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET byte for byte as flanneld writes them', () => {
      const text = formatSubnetFile({
        network: IPNet.parse('10.244.0.0/16'), subnet: IPNet.parse('10.244.1.0/24'),
        ipv6Network: IPNet.parse('fd00:10:244::/56'), ipv6Subnet: IPNet.parse('fd00:10:244:1::/64'),
        mtu: 1500, ipMasq: false,
      });
      expect(text).to.equal(fixture('subnet.env'));
    });

    it('reads both subnets back (the next start reuses them)', () => {
      const r = parseSubnetFile(fixture('subnet.env'));
      expect(r.subnet?.toString()).to.equal('10.244.1.0/24');
      expect(r.ipv6Subnet?.toString()).to.equal('fd00:10:244:1::/64');
      expect(r.ipv6Network?.toString()).to.equal('fd00:10:244::/56');
    });
  });

  describe("another node's dual-stack lease", () => {
    const raw = (key: string, value = fixture('lease-host-gw.json')) => ({ key, value, leaseId: '7', modRevision: 5n, createRevision: 5n });

    it('is accepted with its IPv6 subnet and PublicIPv6', () => {
      const lease = leaseFromRaw(raw('10.244.2.0-24&fd00:10:244:2::-64'), dualConfig());
      expect(lease.ipv6Subnet?.toString()).to.equal('fd00:10:244:2::/64');
      expect(lease.attrs.publicIPv6).to.equal('fd00:198:18::3');
    });

    const bad: { name: string; key: string; value?: string; says: string[] }[] = [
      { name: 'an IPv6 subnet outside IPv6Network', key: '10.244.2.0-24&fd00:99::-64', says: ['fd00:99::/64', 'outside the IPv6 network fd00:10:244::/56'] },
      { name: 'an IPv6 subnet of another length than IPv6SubnetLen', key: '10.244.2.0-24&fd00:10:244:2::-72', says: ['/72', 'IPv6SubnetLen is 64'] },
      { name: 'an IPv6 part that is no address', key: '10.244.2.0-24&fd00:::1::-64', says: ['fd00:::1::'] },
      { name: 'an IPv6 prefix longer than 128', key: '10.244.2.0-24&fd00:10:244:2::-129', says: ['129'] },
      { name: 'a PublicIPv6 that is an IPv4 address', key: '10.244.2.0-24&fd00:10:244:2::-64', value: '{"PublicIP":"198.18.0.3","PublicIPv6":"198.18.0.3"}', says: ['PublicIPv6', '"198.18.0.3"', 'not an IPv6 address'] },
      { name: 'a PublicIPv6 that is a number', key: '10.244.2.0-24&fd00:10:244:2::-64', value: '{"PublicIP":"198.18.0.3","PublicIPv6":6}', says: ['PublicIPv6 must be a string or null'] },
      { name: 'a PublicIPv6 that is a host name', key: '10.244.2.0-24&fd00:10:244:2::-64', value: '{"PublicIP":"198.18.0.3","PublicIPv6":"node-3.example"}', says: ['PublicIPv6', 'node-3.example'] },
    ];
    for (const b of bad) {
      it(`is refused, naming the fault, with ${b.name}`, () => {
        const err = refusedWith(LeaseFormatError, () => leaseFromRaw(raw(b.key, b.value), dualConfig()));
        for (const s of b.says) expect(err.message).to.include(s);
      });
    }
  });

  describe('the own lease on restart (flanneld\'s isIPv6SubnetConfigCompat)', () => {
    const raw = (key: string) => ({ key, value: '{}', leaseId: '7', modRevision: 5n, createRevision: 5n });
    it('is reused when it has an IPv6 subnet exactly when EnableIPv6', () => {
      expect(familyMismatch(raw('10.244.2.0-24&fd00:10:244:2::-64'), dualConfig())).to.equal(undefined);
      expect(familyMismatch(raw('10.244.2.0-24'), dualConfig({ EnableIPv6: false }))).to.equal(undefined);
    });
    it('is given up when IPv6 was turned on or off since it was made, saying why', () => {
      expect(familyMismatch(raw('10.244.2.0-24'), dualConfig())).to.include('has no IPv6 subnet');
      expect(familyMismatch(raw('10.244.2.0-24&fd00:10:244:2::-64'), dualConfig({ EnableIPv6: false }))).to.include('has an IPv6 subnet');
    });
  });

  describe('backends that cannot carry IPv6', () => {
    for (const type of ['udp', 'ipip']) {
      it(`refuses EnableIPv6 with ${type}, naming the backends that carry it`, () => {
        const err = refusedWith(ConfigError, () => parseNetworkConfigText(JSON.stringify({ ...DUAL, Backend: { Type: type } })));
        expect(err.field).to.equal('Backend.Type');
        expect(err.message).to.include(`"${type}" cannot carry IPv6`).and.to.include('vxlan, host-gw, wireguard');
      });
    }
    it('refuses a udp Fallback with EnableIPv6', () => {
      const err = refusedWith(ConfigError, () => parseNetworkConfigText(JSON.stringify({ ...DUAL, Backend: { Type: 'host-gw', Fallback: 'udp' } })));
      expect(err.field).to.equal('Backend.Fallback');
    });
    it('warns that bgp leases IPv6 without routing it yet in this build, and says nothing for vxlan or wireguard', () => {
      expect(ipv6NotCarriedWarning(dualConfig({ Backend: { Type: 'bgp' } }))).to.include('bgp backend of this build does not route IPv6 yet');
      expect(ipv6NotCarriedWarning(dualConfig({ Backend: { Type: 'vxlan' } }))).to.equal(undefined);
      expect(ipv6NotCarriedWarning(dualConfig({ Backend: { Type: 'wireguard' } }))).to.equal(undefined);
    });
    it('accepts host-gw and vxlan with EnableIPv6, and udp without it', () => {
      expect(parseNetworkConfigText(JSON.stringify(DUAL)).enableIPv6).to.equal(true);
      expect(parseNetworkConfigText(JSON.stringify({ ...DUAL, Backend: { Type: 'vxlan' } })).enableIPv6).to.equal(true);
      expect(parseNetworkConfigText(JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } })).enableIPv6).to.equal(false);
    });
  });

  describe('PublicIPv6 of this node', () => {
    const sys: SystemView = {
      interfaces: () => [
        { name: 'eth0', ipv4: ['198.18.0.1'], ipv6: ['fd00:198:18::1'] },
        { name: 'eth1', ipv4: ['198.18.1.1'], ipv6: [] },
      ],
      linkInfo: (name) => (name === 'eth0' ? { index: 2, mtu: 1500 } : name === 'eth1' ? { index: 3, mtu: 1500 } : undefined),
      routes: () => [],
    };
    it("is the chosen interface's global IPv6 address, as flanneld takes it", () => {
      expect(selectInterface({ iface: ['eth0'], wantIPv6: true }, sys).publicIPv6).to.equal('fd00:198:18::1');
    });
    it('is --public-ipv6 when given, written in the form flanneld writes (RFC 5952)', () => {
      expect(selectInterface({ iface: ['eth0'], wantIPv6: true, publicIPv6: 'FD00:198:18:0:0:0:0:9' }, sys).publicIPv6).to.equal('fd00:198:18::9');
    });
    it('is not published when the network carries no IPv6', () => {
      expect(selectInterface({ iface: ['eth0'] }, sys).publicIPv6).to.equal(undefined);
    });
    it('is required with EnableIPv6: an interface without one is refused, naming --public-ipv6', () => {
      const err = refusedWith(InterfaceSelectionError, () => selectInterface({ iface: ['eth1'], wantIPv6: true }, sys));
      expect(err.flag).to.equal('--public-ipv6');
      expect(err.message).to.include('eth1').and.to.include('no global IPv6 address');
    });
    it('refuses a --public-ipv6 that is not an IPv6 address, naming the flag and value', () => {
      const err = refusedWith(InterfaceSelectionError, () => selectInterface({ iface: ['eth0'], publicIPv6: '198.18.0.1' }, sys));
      expect(err.message).to.equal('--public-ipv6 "198.18.0.1" is not an IPv6 address');
    });
    it('comes from --public-ipv6 or FLANNELD_PUBLIC_IPV6', () => {
      const fromFlag = parseDaemonFlags(['--public-ipv6', 'fd00:198:18::7'], {}, '0');
      const fromEnv = parseDaemonFlags([], { FLANNELD_PUBLIC_IPV6: 'fd00:198:18::8' }, '0');
      expect(fromFlag.kind === 'run' && fromFlag.flags.publicIpv6).to.equal('fd00:198:18::7');
      expect(fromEnv.kind === 'run' && fromEnv.flags.publicIpv6).to.equal('fd00:198:18::8');
    });
  });

  describe('host-gw over IPv6', () => {
    const NO_KERNEL = new Proxy({}, { get: () => () => { throw new Error('a planner called netlink'); } }) as unknown as Netlink;
    const QUIET = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
    const local: LocalNode = { extIface: { name: 'eth0', index: 2, mtu: 1500, ipv4: '198.18.0.1' }, publicIP: '198.18.0.1', publicIPv6: 'fd00:198:18::1' };
    const lease = (n: number, attrs: Partial<LeaseAttrs> = {}, v6 = true): Lease => ({
      key: v6 ? `10.244.${n}.0-24&fd00:10:244:${n}::-64` : `10.244.${n}.0-24`,
      subnet: IPNet.parse(`10.244.${n}.0/24`),
      ...(v6 ? { ipv6Subnet: IPNet.parse(`fd00:10:244:${n}::/64`) } : {}),
      modRevision: 1n,
      attrs: { publicIP: `198.18.0.${n}`, publicIPv6: `fd00:198:18::${n}`, backendType: 'host-gw', ...attrs },
    });
    const own = lease(1);
    const plan = (ownLease: Lease, peers: Lease[]) => {
      const backend = backendFactory('host-gw').create({ type: 'host-gw', settings: {} }, { log: QUIET, netlink: NO_KERNEL });
      const a = assignPeers({ order: ['host-gw'], running: ['host-gw'], own: ownLease, leases: peers, reach: () => true, whyNotReached: () => '' });
      const input: PlanInput = { local, own: ownLease, reach: () => true, siblings: 0 };
      return backend.desired(input, assignedTo(a, 'host-gw', new Map()));
    };
    const show = (r: { dst: string; gateway?: string; dev: string }) => `${r.dst} via ${r.gateway} dev ${r.dev}`;

    it("routes each peer's IPv6 subnet via its PublicIPv6 on the external interface, with the IPv4 route's protocol", () => {
      const state = plan(own, [lease(2), lease(3)]);
      expect(state.protocol).to.equal(118);
      expect(state.routes.map(show)).to.deep.equal([
        '10.244.2.0/24 via 198.18.0.2 dev eth0', 'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0',
        '10.244.3.0/24 via 198.18.0.3 dev eth0', 'fd00:10:244:3::/64 via fd00:198:18::3 dev eth0',
      ]);
      expect(state.skipped).to.deep.equal([]);
    });

    it('routes only IPv4 to a peer with no IPv6 subnet, and plans no IPv6 route on an IPv4-only node', () => {
      expect(plan(own, [lease(2, {}, false)]).routes.map(show)).to.deep.equal(['10.244.2.0/24 via 198.18.0.2 dev eth0']);
      expect(plan(lease(1, {}, false), [lease(2)]).routes.map(show)).to.deep.equal(['10.244.2.0/24 via 198.18.0.2 dev eth0']);
    });

    it('skips the IPv6 route of a peer that publishes no PublicIPv6, with the reason, and keeps its IPv4 route', () => {
      const state = plan(own, [lease(2, { publicIPv6: null })]);
      expect(state.routes.map(show)).to.deep.equal(['10.244.2.0/24 via 198.18.0.2 dev eth0']);
      expect(state.skipped).to.deep.equal(['peer 10.244.2.0/24 has the IPv6 subnet fd00:10:244:2::/64 but publishes no PublicIPv6; its IPv6 subnet is not routed']);
    });

    it('leaves an IPv6 route the kernel holds at metric 1024 alone (the kernel\'s metric for "none")', () => {
      const state = plan(own, [lease(2)]);
      const kernel = state.routes.map((r) => ({
        family: (r.dst.includes(':') ? 6 : 4) as 4 | 6, dst: r.dst, gateway: r.gateway, ifindex: r.ifindex, onlink: false,
        protocol: 118, scope: 0, table: 254, type: 'unicast', ...(r.dst.includes(':') ? { metric: 1024 } : {}),
      }));
      const diff = diffKernelState(state, { routes: kernel, devices: new Map<number, never>() });
      expect(diff.upserts).to.deep.equal([]);
      expect(diff.deletes).to.deep.equal([]);
    });

    it('puts back a deleted IPv6 route and removes the IPv6 route of a peer that left', () => {
      const state = plan(own, [lease(2)]);
      const stale = { family: 6 as const, dst: 'fd00:10:244:9::/64', gateway: 'fd00:198:18::9', ifindex: 2, onlink: false, protocol: 118, scope: 0, table: 254, type: 'unicast', metric: 1024 };
      const diff = diffKernelState(state, { routes: [stale], devices: new Map<number, never>() });
      expect(diff.upserts.map((o) => o.op === 'replaceRoute' && o.route.dst)).to.include('fd00:10:244:2::/64');
      expect(diff.deletes).to.deep.equal([{ op: 'deleteRoute', route: { dst: 'fd00:10:244:9::/64', protocol: 118, table: 254, metric: 1024 } }]);
    });
  });
  describe('vxlan over IPv6 (flannel-v6.<VNI>)', () => {
    const NO_KERNEL = new Proxy({}, { get: () => () => { throw new Error('a planner called netlink'); } }) as unknown as Netlink;
    const QUIET = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
    const local: LocalNode = { extIface: { name: 'eth0', index: 2, mtu: 1500, ipv4: '198.18.0.1' }, publicIP: '198.18.0.1', publicIPv6: 'fd00:198:18::1' };
    const flannel1 = { name: 'flannel.1', index: 7, mac: '0e:01:c6:12:00:01', mtu: 1450, up: true } as LinkInfo;
    const flannelV6 = { name: 'flannel-v6.1', index: 8, mac: '1e:01:c6:12:00:01', mtu: 1430, up: true } as LinkInfo;
    const lease = (n: number, attrs: Partial<LeaseAttrs> = {}): Lease => ({
      key: `10.244.${n}.0-24&fd00:10:244:${n}::-64`,
      subnet: IPNet.parse(`10.244.${n}.0/24`),
      ipv6Subnet: IPNet.parse(`fd00:10:244:${n}::/64`),
      modRevision: 1n,
      attrs: {
        publicIP: `198.18.0.${n}`, publicIPv6: `fd00:198:18::${n}`, backendType: 'vxlan',
        backendData: { VNI: 1, VtepMAC: `0e:01:c6:12:00:0${n}` }, backendV6Data: { VNI: 1, VtepMAC: `1e:01:c6:12:00:0${n}` }, ...attrs,
      },
    });
    const own = lease(1);
    const plan = (peers: Lease[], ipv6Device: LinkInfo | null = flannelV6) => {
      const backend = backendFactory('vxlan').create({ type: 'vxlan', settings: {} }, { log: QUIET, netlink: NO_KERNEL });
      const a = assignPeers({ order: ['vxlan'], running: ['vxlan'], own, leases: peers, reach: () => false, whyNotReached: () => '' });
      return backend.desired({ local, own, device: flannel1, ipv6Device: ipv6Device ?? undefined, reach: () => false, siblings: 0 }, assignedTo(a, 'vxlan', new Map()));
    };

    it("plans each peer's IPv6 neighbour, FDB entry (dst PublicIPv6) and route via its VTEP's link-local address on flannel-v6.1, and its /128", () => {
      const state = plan([lease(2)]);
      const v6 = state.devices.find((d) => d.name === 'flannel-v6.1')!;
      expect(v6).to.deep.include({ family: 6, addresses: ['fd00:10:244:1::/128'] });
      // EUI-64 of 1e:01:c6:12:00:02: the kernel takes a link-local gateway without looking it up, so replacing another backend's route is atomic.
      expect(v6.neighbors).to.deep.equal([{ ip: 'fe80::1c01:c6ff:fe12:2', mac: '1e:01:c6:12:00:02', peer: '10.244.2.0-24&fd00:10:244:2::-64' }]);
      expect(v6.fdb).to.deep.equal([{ mac: '1e:01:c6:12:00:02', dst: 'fd00:198:18::2', peer: '10.244.2.0-24&fd00:10:244:2::-64' }]);
      expect(state.routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? ' onlink' : ''}`)).to.deep.equal([
        '10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink', 'fd00:10:244:2::/64 via fe80::1c01:c6ff:fe12:2 dev flannel-v6.1',
      ]);
    });

    it('skips the IPv6 subnet of a peer without BackendV6Data or PublicIPv6, saying which, and keeps its IPv4 entries', () => {
      const state = plan([lease(2, { backendV6Data: undefined }), lease(3, { publicIPv6: null })]);
      expect(state.routes.map((r) => r.dst)).to.deep.equal(['10.244.2.0/24', '10.244.3.0/24']);
      expect(state.skipped).to.deep.equal([
        'peer 10.244.2.0/24 has the IPv6 subnet fd00:10:244:2::/64 but no valid BackendV6Data.VtepMAC; its IPv6 subnet is not routed',
        'peer 10.244.3.0/24 has the IPv6 subnet fd00:10:244:3::/64 but no PublicIPv6; its IPv6 subnet is not routed',
      ]);
    });

    it('leaves the IPv6 routes alone when the plan is read without the IPv6 device', () => {
      const state = plan([lease(2)], null);
      expect(state.routes.map((r) => r.dst)).to.deep.equal(['10.244.2.0/24']);
      expect(state.keepRoutes).to.include('fd00:10:244:2::/64');
    });

    it("during a migration, reads each instance's IPv6 data from its own TwillBackends entry (DataV6)", () => {
      const text = '{"PublicIP":"198.18.0.2","PublicIPv6":"fd00:198:18::2","BackendType":"host-gw",' +
        '"TwillBackends":[{"Type":"host-gw"},{"Type":"vxlan","Data":{"VNI":1,"VtepMAC":"0e:01:c6:12:00:02"},"DataV6":{"VNI":1,"VtepMAC":"1e:01:c6:12:00:02"}}]}';
      const attrs = decodeLeaseAttrs(text);
      expect(encodeLeaseAttrs(attrs)).to.equal(text);
      expect(backendV6DataOf(attrs, 'vxlan')).to.deep.equal({ VNI: 1, VtepMAC: '1e:01:c6:12:00:02' });
      expect(backendV6DataOf(attrs, 'host-gw')).to.equal(undefined);
      const state = plan([{ ...lease(2), attrs }]);
      expect(state.routes.map((r) => r.dst)).to.include('fd00:10:244:2::/64');
    });

    it('DirectRouting: asks each family its own reachability (PublicIP for IPv4, PublicIPv6 for IPv6)', () => {
      const backend = backendFactory('vxlan').create({ type: 'vxlan', settings: { DirectRouting: true } }, { log: QUIET, netlink: NO_KERNEL });
      const reach = (ip: string) => ip === '198.18.0.2' || ip === 'fd00:198:18::3';
      const a = assignPeers({ order: ['vxlan'], running: ['vxlan'], own, leases: [lease(2), lease(3)], reach, whyNotReached: () => '' });
      const state = backend.desired({ local, own, device: flannel1, ipv6Device: flannelV6, reach, siblings: 0 }, assignedTo(a, 'vxlan', new Map()));
      expect(state.routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`)).to.deep.equal([
        '10.244.2.0/24 via 198.18.0.2 dev eth0', '10.244.3.0/24 via 10.244.3.0 dev flannel.1',
        'fd00:10:244:2::/64 via fe80::1c01:c6ff:fe12:2 dev flannel-v6.1', 'fd00:10:244:3::/64 via fd00:198:18::3 dev eth0',
      ]);
    });

    it("never removes the kernel's link-local address of the IPv6 device", () => {
      const state = plan([lease(2)]);
      const addr = (cidr: string, scope: number) => ({ family: 6 as const, address: cidr.split('/')[0], prefixLen: Number(cidr.split('/')[1]), cidr, ifindex: 8, scope });
      const diff = diffKernelState(state, {
        routes: [],
        devices: new Map([[8, { addresses: [addr('fd00:10:244:1::/128', 0), addr('fe80::1c01:c6ff:fe12:1/64', 253)], neighbors: [], fdb: [] }]]),
      });
      expect(diff.addresses).to.deep.equal([]);
    });
  });
});

