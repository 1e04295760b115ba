/**
 * The bgp backend's pure parts: its config keys and their errors, the BIRD
 * neighbours a node gets (the mesh from the leases, the listed peers on its
 * link), and the rule that bgp carries a peer only while BIRD has a route
 * to it.
 */
import { expect } from 'chai';
import { ConfigError } from '../../lib/config';
import { IPNet } from '../../lib/ip';
import type { Lease } from '../../lib/subnet';
import { assignPeers, createBackend, diffRoutes, emptyPlan, validateBackendConfig, type Peer } from '../../backends';
import { BIRD_METRIC, bgpSettings, birdPeers, DEFAULT_ASN, peerAsn } from '../../backends/bgp';
import { plannedState, STANDBY_METRIC } from '../../backends/standby';
import type { RouteInfo } from '../../lib/netlink';
import { sessionAdvice } from '../../lib/diagnose/bgp-check';
import { AgentMetrics } from '../../lib/observe/metrics';
import { parseBgpSessions } from '../../lib/cli/status/health';
import { bgpText } from '../../lib/cli/status/cells';

const QUIET = { debug() {}, info() {}, warn() {}, error() {} } as never;

const bgp = (settings: Record<string, unknown>) => ({ type: 'bgp', settings });

function refused(settings: Record<string, unknown>): ConfigError {
  try {
    validateBackendConfig(bgp(settings));
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`accepted ${JSON.stringify(settings)}`);
}

const peer = (n: number, data: unknown = { ASN: DEFAULT_ASN }): Peer => ({
  key: `10.244.${n}.0-24`, subnet: IPNet.parse(`10.244.${n}.0/24`), publicIP: `198.18.0.${n}`, data,
});

const lease = (n: number, attrs: Partial<Lease['attrs']> = {}): Lease => ({
  key: `10.244.${n}.0-24`,
  subnet: IPNet.parse(`10.244.${n}.0/24`),
  attrs: { publicIP: `198.18.0.${n}`, publicIPv6: null, backendType: 'bgp', backendData: { ASN: DEFAULT_ASN }, ...attrs },
} as Lease);

describe('bgp backend', () => {
  describe('config', () => {
    it('{"Type": "bgp"} alone: ASN 64512, a full mesh, graceful restart on', () => {
      expect(bgpSettings(bgp({}))).to.deep.equal({ asn: 64512, mesh: true, peers: [], gracefulRestart: true });
    });

    it('reads Peers, with the cluster ASN as a peer\'s default, and the passwords', () => {
      const s = bgpSettings(bgp({ ASN: 65010, Mesh: false, Password: 'k3y', Peers: [{ IP: '198.18.0.253', ASN: 65000 }, { ip: '198.18.1.254', Password: 'other' }] }));
      expect(s.peers).to.deep.equal([{ ip: '198.18.0.253', asn: 65000 }, { ip: '198.18.1.254', asn: 65010, password: 'other' }]);
      expect(s.password).to.equal('k3y');
      expect(s.mesh).to.equal(false);
    });

    const bad: [string, Record<string, unknown>, string, RegExp][] = [
      ['an ASN that is text', { ASN: '64512' }, 'Backend.ASN', /"64512" is not an AS number/],
      ['ASN 0', { ASN: 0 }, 'Backend.ASN', /from 1 to 4294967294/],
      ['an ASN above 32 bits', { ASN: 4294967296 }, 'Backend.ASN', /not an AS number/],
      ['AS_TRANS', { ASN: 23456 }, 'Backend.ASN', /AS_TRANS/],
      ['Peers that is not a list', { Peers: '198.18.0.253' }, 'Backend.Peers', /is not a list/],
      ['a peer that is not an object', { Peers: [65000] }, 'Backend.Peers[0]', /is not an object/],
      ['a peer without IP', { Peers: [{ ASN: 65000 }] }, 'Backend.Peers[0].IP', /undefined is not an IPv4 address|is not an IPv4 address/],
      ['an IPv6 peer', { Peers: [{ IP: '2001:db8::1', ASN: 65000 }] }, 'Backend.Peers[0].IP', /"2001:db8::1" is not an IPv4 address/],
      ['a loopback peer', { Peers: [{ IP: '127.0.0.1' }] }, 'Backend.Peers[0].IP', /cannot be a BGP neighbour/],
      ['a peer listed twice', { Peers: [{ IP: '198.18.0.253' }, { IP: '198.18.0.253' }] }, 'Backend.Peers[1].IP', /listed twice/],
      ['a peer\'s bad ASN', { Peers: [{ IP: '198.18.0.253', ASN: -1 }] }, 'Backend.Peers[0].ASN', /not an AS number/],
      ['Mesh false and no Peers', { Mesh: false }, 'Backend.Peers', /at least one entry in Peers/],
      ['Mesh that is not a boolean', { Mesh: 'yes' }, 'Backend.Mesh', /not true or false/],
      ['a password of 81 bytes', { Password: 'x'.repeat(81) }, 'Backend.Password', /at most 80/],
      ['a password with a newline', { Password: 'a\nb' }, 'Backend.Password', /control character/],
      ['a password with a double quote', { Peers: [{ IP: '198.18.0.253', Password: 'a"b' }] }, 'Backend.Peers[0].Password', /double quote or a backslash/],
      ['a hold time under 3 s', { HoldTime: 1 }, 'Backend.HoldTime', /between 3 and 65535/],
      ['GracefulRestart as text', { GracefulRestart: 'on' }, 'Backend.GracefulRestart', /not true or false/],
    ];
    for (const [what, settings, field, message] of bad) {
      it(`refuses ${what}, naming ${field}`, () => {
        const err = refused(settings);
        expect(err.field).to.equal(field);
        expect(err.message).to.match(message);
        expect(err.message.startsWith(field)).to.equal(true);
      });
    }

    it('a bgp Fallback is checked like any backend', () => {
      expect(() => validateBackendConfig({ type: 'vxlan', settings: { Fallback: { Type: 'bgp', ASN: 0 } } })).to.throw(ConfigError, /Backend.Fallback: Backend.ASN/);
    });

    it('builds a backend that owns no route of its own (BIRD\'s are BIRD\'s)', () => {
      const b = createBackend(bgp({}), { log: QUIET, netlink: {} as never });
      expect(b.type).to.equal('bgp');
      expect(b.routeProtocol).to.equal(undefined);
    });
  });

  describe('BIRD neighbours', () => {
    const onLink = (ip: string) => ip.startsWith('198.18.0.');

    it('the mesh: every node whose lease terminates bgp, with the ASN it publishes', () => {
      const { peers, skipped } = birdPeers(bgpSettings(bgp({})), [peer(3, { ASN: 65001 }), peer(2)], onLink);
      expect(peers.map((p) => [p.ip, p.asn])).to.deep.equal([['198.18.0.2', 64512], ['198.18.0.3', 65001]]);
      expect(skipped).to.deep.equal([]);
    });

    it('a peer whose lease has a bad ASN gets no session, with one line saying why', () => {
      const { peers, skipped } = birdPeers(bgpSettings(bgp({})), [peer(2, { ASN: 'x' })], onLink);
      expect(peers).to.deep.equal([]);
      expect(skipped).to.have.length(1);
      expect(skipped[0]).to.contain('198.18.0.2').and.contain('BackendData.ASN is "x"');
    });

    it('listed peers: only those on this node\'s link, with the password; Mesh false leaves the nodes out', () => {
      const s = bgpSettings(bgp({ Mesh: false, Password: 'pw', Peers: [{ IP: '198.18.0.253', ASN: 65000 }, { IP: '198.18.1.254', ASN: 65000 }] }));
      const { peers } = birdPeers(s, [peer(2)], onLink);
      expect(peers).to.deep.equal([{ name: peers[0].name, ip: '198.18.0.253', asn: 65000, password: 'pw' }]);
    });

    it('peerAsn: the cluster ASN when the lease names none', () => {
      expect(peerAsn(undefined, 64999)).to.deep.equal({ asn: 64999 });
      expect(peerAsn({ ASN: 70000 }, 64999)).to.deep.equal({ asn: 70000 });
    });
  });

  describe('twill diagnose on a session that is down', () => {
    it('names the missing kernel feature when BIRD cannot set TCP-MD5', () => {
      expect(sessionAdvice({ info: 'Active', lastError: 'Kernel does not support TCP MD5 signatures' })).to.contain('CONFIG_TCP_MD5SIG').and.contain('Backend.Password');
    });
    it('otherwise points at TCP 179, BIRD, the AS numbers and passwords', () => {
      expect(sessionAdvice({ info: 'Active        Socket: Connection refused' })).to.contain('TCP 179');
    });
  });

  describe('sessions in /metrics, as twill status reads them back', () => {
    it('says why a session is down, and nothing for an established one', async () => {
      const m = new AgentMetrics();
      m.setBgp([
        { name: 'mesh_198_18_0_2', neighbor: '198.18.0.2', state: 'up', info: 'Established' },
        { name: 'mesh_198_18_0_3', neighbor: '198.18.0.3', state: 'start', info: 'Active        Socket: Connection refused', lastError: 'Socket: Connection refused' },
        { name: 'peer_198_18_0_9', neighbor: '198.18.0.9', state: 'start', info: 'Idle          "quoted" \\ reason' },
      ], 1);
      const sessions = parseBgpSessions(await m.metrics());
      expect(sessions).to.deep.equal([
        { neighbor: '198.18.0.2', state: 'Established' },
        { neighbor: '198.18.0.3', state: 'Active', reason: 'Socket: Connection refused' },
        { neighbor: '198.18.0.9', state: 'Idle', reason: '"quoted" \\ reason' },
      ]);
      expect(bgpText(sessions)).to.equal('BGP 198.18.0.2 Established, 198.18.0.3 Active (Socket: Connection refused), 198.18.0.9 Idle ("quoted" \\ reason)');
    });
  });

  describe('routes by destination and metric', () => {
    const route = (dst: string, metric?: number) => ({ family: 4, dst, gateway: '198.18.0.2', ifindex: 2, onlink: false, protocol: 117, scope: 0, table: 254, type: 'unicast', ...(metric !== undefined ? { metric } : {}) }) as RouteInfo;

    it('a standby route beside a carried one to the same subnet is two routes; moving between them adds before it deletes', () => {
      const plan = emptyPlan();
      diffRoutes(plan, [{ dst: '10.244.2.0/24', gateway: '198.18.0.2', dev: 'eth0', ifindex: 2, onlink: false, metric: STANDBY_METRIC }], [route('10.244.2.0/24')], 117);
      expect(plan.upserts).to.deep.equal([{ op: 'replaceRoute', route: { dst: '10.244.2.0/24', gateway: '198.18.0.2', dev: 2, onlink: false, protocol: 117, metric: STANDBY_METRIC } }]);
      expect(plan.deletes).to.deep.equal([{ op: 'deleteRoute', route: { dst: '10.244.2.0/24', protocol: 117, table: 254 } }]);
    });

    it('keeps a route that matches, metric included', () => {
      const plan = emptyPlan();
      diffRoutes(plan, [{ dst: '10.244.2.0/24', gateway: '198.18.0.2', dev: 'eth0', ifindex: 2, onlink: false, metric: STANDBY_METRIC }], [route('10.244.2.0/24', STANDBY_METRIC)], 117);
      expect(plan).to.deep.equal(emptyPlan());
    });
  });

  describe('which backend carries a peer', () => {
    const own = lease(1);
    const input = (routed: Set<string>, order = ['bgp', 'vxlan']) => ({
      order, running: ['bgp', 'vxlan'], own, leases: [own, lease(2, { backends: [{ type: 'bgp', data: { ASN: DEFAULT_ASN } }, { type: 'vxlan', data: {} }] } as never)],
      reach: () => true, whyNotReached: () => '', routed: (s: string) => routed.has(s),
    });

    it('bgp only once BIRD has a route to the peer\'s subnet; the Fallback until then', () => {
      expect(assignPeers(input(new Set())).carried.get('vxlan')!.map((p) => p.key)).to.deep.equal(['10.244.2.0-24']);
      const a = assignPeers(input(new Set(['10.244.2.0/24'])));
      expect(a.carried.get('bgp')!.map((p) => p.key)).to.deep.equal(['10.244.2.0-24']);
      expect(a.carried.get('vxlan')).to.deep.equal([]);
    });

    it('a peer on bgp has a standby on the Fallback (the backend that carries it when BIRD\'s route goes); none on the Fallback itself', () => {
      const a = assignPeers(input(new Set(['10.244.2.0/24'])));
      expect(a.standby.get('vxlan')!.map((p) => p.key)).to.deep.equal(['10.244.2.0-24']);
      expect(a.standby.get('bgp')).to.deep.equal([]);
      expect(assignPeers(input(new Set())).standby.get('bgp')).to.deep.equal([]);
    });

    it('the standby\'s routes get metric 1024, above BIRD\'s 32; its carried peers keep metric 0', () => {
      const planner = createBackend({ type: 'host-gw', settings: {} }, { log: QUIET, netlink: {} as never });
      const device = { index: 2, name: 'eth0' };
      const planInput = { local: { extIface: { name: 'eth0', index: 2, mtu: 1500 }, publicIP: '198.18.0.1' }, own, reach: () => true, siblings: 0, device } as never;
      const state = plannedState(planner, planInput, { carried: [peer(3)], leaving: [], known: [], standby: [peer(2)] });
      expect(state.routes.map((r) => [r.dst, r.metric ?? 0])).to.deep.equal([['10.244.3.0/24', 0], ['10.244.2.0/24', STANDBY_METRIC]]);
      expect(STANDBY_METRIC).to.be.greaterThan(BIRD_METRIC);
    });

    it('no route and nothing else in common: skipped, saying BGP has no route and how to add a Fallback', () => {
      const a = assignPeers({ ...input(new Set(), ['bgp']), running: ['bgp'], leases: [own, lease(2)] });
      expect(a.carried.get('bgp')).to.deep.equal([]);
      expect(a.skipped.join('\n')).to.contain('BGP has no route to it yet').and.contain('Fallback');
    });
  });
});
