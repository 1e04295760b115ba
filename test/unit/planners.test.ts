/**
 * Backends as planners (DESIGN §3): what each plans for a set of peers, how
 * peers are assigned to instances, and the diff the reconciler applies —
 * all pure, checked without a kernel.
 */
import { expect } from 'chai';
import { IPNet } from '../../lib/ip';
import type { Lease, LeaseAttrs } from '../../lib/subnet';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import type { AssignedPeers, Backend, LocalNode, PlanInput } from '../../backends';
import { assignPeers, backendFactory, diffKernelState, assignedTo } from '../../backends';
import type { ObservedState } from '../../backends';

// Planning does no I/O: a Netlink that is never called is enough to build a backend.
const NO_KERNEL = new Proxy({}, { get: () => () => { throw new Error('a planner called netlink'); } }) as unknown as Netlink;
const QUIET = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

const local: LocalNode = { extIface: { name: 'eth0', index: 2, mtu: 1500, ipv4: '198.18.0.1' } as LocalNode['extIface'], publicIP: '198.18.0.1' };
const lease = (n: number, attrs: Partial<LeaseAttrs> = {}): Lease => ({
  key: `10.244.${n}.0-24`, subnet: IPNet.parse(`10.244.${n}.0/24`), modRevision: 1n,
  attrs: { publicIP: `198.18.0.${n}`, publicIPv6: null, ...attrs },
});
const vxlanLease = (n: number) => lease(n, { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: `0e:01:c6:12:00:0${n}` } });
const own = vxlanLease(1);
const flannel1 = { name: 'flannel.1', index: 7, mac: '0e:01:c6:12:00:01', mtu: 1450, up: true } as LinkInfo;

function backend(type: string, settings: Record<string, unknown> = {}): Backend {
  return backendFactory(type).create({ type, settings }, { log: QUIET, netlink: NO_KERNEL });
}
function input(over: Partial<PlanInput> = {}): PlanInput {
  return { local, own, device: flannel1, reach: () => false, network: IPNet.parse('10.244.0.0/16'), siblings: 0, ...over };
}
function assigned(type: string, leases: Lease[]): AssignedPeers {
  const a = assignPeers({ order: [type], running: [type], own, leases, reach: () => true, whyNotReached: () => '' });
  return assignedTo(a, type, new Map());
}

describe('planners', () => {
  it('vxlan plans one neighbour, FDB entry and onlink route per peer, and the /32 on its device', () => {
    const state = backend('vxlan').desired(input(), assigned('vxlan', [own, vxlanLease(2), vxlanLease(3)]));
    expect(state.protocol).to.equal(117);
    expect(state.routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? ' onlink' : ''}`)).to.deep.equal([
      '10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink', '10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink',
    ]);
    expect(state.devices[0].addresses).to.deep.equal(['10.244.1.0/32']);
    expect(state.devices[0].fdb).to.deep.equal([
      { mac: '0e:01:c6:12:00:02', dst: '198.18.0.2', peer: '10.244.2.0-24' }, { mac: '0e:01:c6:12:00:03', dst: '198.18.0.3', peer: '10.244.3.0-24' },
    ]);
    expect(state.devices[0].neighbors?.map((n) => `${n.ip} ${n.mac}`)).to.deep.equal(['10.244.2.0 0e:01:c6:12:00:02', '10.244.3.0 0e:01:c6:12:00:03']);
  });

  it('vxlan skips a peer without a valid VtepMAC, or claiming this node\'s VTEP MAC, with the reason', () => {
    const bad = lease(2, { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: 'nope' } });
    const twin = lease(3, { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: flannel1.mac } });
    const state = backend('vxlan').desired(input(), assigned('vxlan', [bad, twin]));
    expect(state.routes).to.deep.equal([]);
    expect(state.skipped).to.deep.equal([
      'peer 10.244.2.0/24 (198.18.0.2) has no valid BackendData.VtepMAC; skipping it',
      "peer 10.244.3.0/24 (198.18.0.3) claims this node's own VTEP MAC 0e:01:c6:12:00:01; ignoring it",
    ]);
  });

  it('vxlan DirectRouting routes a peer the kernel reaches directly via its public IP, with no FDB entry', () => {
    const state = backend('vxlan', { DirectRouting: true }).desired(input({ reach: (ip) => ip === '198.18.0.2' }), assigned('vxlan', [vxlanLease(2), vxlanLease(3)]));
    expect(state.routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`)).to.deep.equal(['10.244.2.0/24 via 198.18.0.2 dev eth0', '10.244.3.0/24 via 10.244.3.0 dev flannel.1']);
    expect(state.devices[0].fdb?.map((f) => f.dst)).to.deep.equal(['198.18.0.3']);
  });

  it('host-gw plans a route via each peer\'s public IP on the external interface and owns no device', () => {
    const state = backend('host-gw').desired(input({ device: undefined }), assigned('host-gw', [lease(2, { backendType: 'host-gw' })]));
    expect(state).to.deep.include({ protocol: 118, devices: [] });
    expect(state.routes).to.deep.equal([{ dst: '10.244.2.0/24', gateway: '198.18.0.2', dev: 'eth0', ifindex: 2, onlink: false, peer: '10.244.2.0-24' }]);
  });

  it('udp routes the whole network into its TUN, and peer by peer while a second udp instance runs', () => {
    const tun = { name: 'flannel0', index: 9 } as LinkInfo;
    const peers = assigned('udp', [lease(2), lease(3)]);
    const alone = backend('udp').desired(input({ device: tun }), peers);
    expect(alone.routes.map((r) => `${r.dst} dev ${r.dev}`)).to.deep.equal(['10.244.0.0/16 dev flannel0']);
    expect(alone.engine).to.deep.equal([{ subnet: '10.244.2.0/24', publicIP: '198.18.0.2', port: 8285 }, { subnet: '10.244.3.0/24', publicIP: '198.18.0.3', port: 8285 }]);
    const beside = backend('udp').desired(input({ device: tun, siblings: 1 }), peers);
    expect(beside.routes.map((r) => `${r.dst} dev ${r.dev}`)).to.deep.equal(['10.244.2.0/24 dev flannel0', '10.244.3.0/24 dev flannel0']);
  });

  it('udp keeps every usable peer in its engine, not only those routed to it', () => {
    // Mid-migration udp → vxlan: node 2 terminates both (carried by vxlan), node 3 only vxlan, node 4 only udp.
    const both = lease(2, { backendType: 'vxlan', backends: [{ type: 'vxlan', data: { VNI: 1, VtepMAC: '0e:01:c6:12:00:02' } }, { type: 'udp' }] });
    const a = assignPeers({ order: ['vxlan'], running: ['vxlan', 'udp'], own, leases: [both, vxlanLease(3), lease(4)], reach: () => true, whyNotReached: () => '' });
    const peers = assignedTo(a, 'udp', new Map());
    expect(peers.carried.map((p) => p.key)).to.deep.equal(['10.244.4.0-24']);
    const plan = backend('udp').desired(input({ device: { name: 'flannel0', index: 9 } as LinkInfo, siblings: 0 }), peers);
    // Packets for node 2 still queued in flannel0 when its route moved to flannel.1 are sent on, and node 3 may send
    // over udp before its lease says so; the engine takes packets only from peers in its table.
    expect(plan.engine?.map((e) => e.subnet).sort()).to.deep.equal(['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
    expect(plan.routes.map((r) => r.dst)).to.deep.equal(['10.244.0.0/16']);
  });
});

describe('peer assignment', () => {
  it('leaves out this node\'s own lease, a lease claiming its public IP and one without a public IP, saying why', () => {
    const a = assignPeers({
      order: ['vxlan'], running: ['vxlan'], own, reach: () => true, whyNotReached: () => '',
      leases: [own, { ...vxlanLease(2), attrs: { ...vxlanLease(2).attrs, publicIP: '198.18.0.1' } }, lease(3, { publicIP: '0.0.0.0', backendType: 'vxlan' })],
    });
    expect(a.carried.get('vxlan')).to.deep.equal([]);
    expect(a.skipped).to.deep.equal([
      "peer 10.244.2.0/24 claims this node's own public IP 198.18.0.1; ignoring it",
      'peer 10.244.3.0/24 publishes no public IP; ignoring it',
    ]);
  });

  it('carries a peer host-gw cannot reach over the Fallback, and names the fix when there is none', () => {
    const both = { backends: [{ type: 'host-gw' }, { type: 'vxlan', data: { VNI: 1, VtepMAC: '0e:01:c6:12:00:02' } }] };
    const far = lease(2, { backendType: 'host-gw', ...both });
    const withFallback = assignPeers({ order: ['host-gw', 'vxlan'], running: ['host-gw', 'vxlan'], own, leases: [far], reach: () => false, whyNotReached: () => 'routed via 198.18.0.254' });
    expect(withFallback.carried.get('vxlan')?.map((p) => p.data)).to.deep.equal([{ VNI: 1, VtepMAC: '0e:01:c6:12:00:02' }]);
    const alone = assignPeers({ order: ['host-gw'], running: ['host-gw'], own, leases: [lease(2, { backendType: 'host-gw' })], reach: () => false, whyNotReached: () => 'routed via 198.18.0.254' });
    expect(alone.skipped[0]).to.contain('host-gw cannot reach it (routed via 198.18.0.254): give host-gw a Fallback');
  });

  it('keeps a peer moving to another instance as leaving the old one, for one pass', () => {
    const peer = lease(2, { backendType: 'vxlan', backends: [{ type: 'udp' }, { type: 'vxlan', data: { VNI: 1, VtepMAC: '0e:01:c6:12:00:02' } }] });
    const before = assignPeers({ order: ['udp'], running: ['udp', 'vxlan'], own, leases: [peer], reach: () => true, whyNotReached: () => '' });
    const after = assignPeers({ order: ['vxlan'], running: ['vxlan', 'udp'], own, leases: [peer], reach: () => true, whyNotReached: () => '' });
    const previous = new Map([['udp', before.carried.get('udp')!], ['vxlan', []]]);
    expect(assignedTo(after, 'udp', previous).leaving.map((p) => p.key)).to.deep.equal(['10.244.2.0-24']);
    expect(assignedTo(after, 'vxlan', previous).carried.map((p) => p.key)).to.deep.equal(['10.244.2.0-24']);
    expect(assignedTo(after, 'udp', new Map()).leaving).to.deep.equal([]);
  });
});

describe('the kernel diff', () => {
  const state = backend('vxlan').desired(input(), assigned('vxlan', [vxlanLease(2)]));
  const route = { family: 4 as const, dst: '10.244.2.0/24', gateway: '10.244.2.0', ifindex: 7, dev: 'flannel.1', onlink: true, protocol: 117, scope: 0, table: 254, type: 'unicast' };
  const observed = (over: Partial<ObservedState> = {}): ObservedState => ({
    routes: [route],
    devices: new Map([[7, {
      addresses: [{ address: '10.244.1.0', prefixLen: 32, cidr: '10.244.1.0/32' } as never],
      neighbors: [{ family: 4, ip: '10.244.2.0', mac: '0e:01:c6:12:00:02', ifindex: 7, state: ['permanent'], permanent: true }],
      fdb: [{ mac: '0e:01:c6:12:00:02', dst: '198.18.0.2', ifindex: 7, permanent: true, self: true }],
    }]]),
    ...over,
  });

  it('is empty when the kernel holds the plan', () => {
    const plan = diffKernelState(state, observed());
    expect([...plan.addresses, ...plan.upserts, ...plan.deletes]).to.deep.equal([]);
  });

  it('puts back a deleted route and removes a route of its protocol that no peer wants, leaving other protocols alone', () => {
    const stale = { ...route, dst: '10.244.9.0/24' };
    const foreign = { ...route, dst: '10.244.8.0/24', protocol: 118 };
    const plan = diffKernelState(state, observed({ routes: [stale, foreign] }));
    expect(plan.upserts.map((o) => o.op)).to.deep.equal(['replaceRoute']);
    expect(plan.deletes).to.deep.equal([{ op: 'deleteRoute', route: { dst: '10.244.9.0/24', protocol: 117, table: 254 } }]);
  });

  it('replaces an FDB entry whose VTEP moved, then deletes the old one', () => {
    const moved = observed();
    const dev = moved.devices.get(7)!;
    const plan = diffKernelState(state, { ...moved, devices: new Map([[7, { ...dev, fdb: [{ ...dev.fdb[0], dst: '198.18.0.99' }] }]]) });
    expect(plan.upserts).to.deep.equal([{ op: 'replaceFdb', fdb: { dev: 7, mac: '0e:01:c6:12:00:02', dst: '198.18.0.2' } }]);
    expect(plan.deletes).to.deep.equal([{ op: 'deleteFdb', fdb: { dev: 7, mac: '0e:01:c6:12:00:02', dst: '198.18.0.99' } }]);
  });
  it('wireguard routes each carried peer into flannel-wg, skips one without a valid PublicKey, and knows every node that terminates wireguard', () => {
    const key = (n: number) => Buffer.alloc(32, n).toString('base64');
    const wg = (n: number) => lease(n, { backendType: 'wireguard', backendData: { PublicKey: key(n) } });
    const bad = lease(3, { backendType: 'wireguard', backendData: { PublicKey: 'nope' } });
    // Node 4 terminates vxlan and wireguard; vxlan is preferred here (mid-migration), yet wireguard must know its key.
    const both = lease(4, { backendType: 'vxlan', backends: [{ type: 'vxlan', data: { VNI: 1, VtepMAC: '0e:01:c6:12:00:04' } }, { type: 'wireguard', data: { PublicKey: key(4) } }] });
    const a = assignPeers({ order: ['vxlan', 'wireguard'], running: ['vxlan', 'wireguard'], own, leases: [wg(2), bad, both], reach: () => true, whyNotReached: () => '' });
    const dev = { name: 'flannel-wg', index: 11, mtu: 1420, up: true } as LinkInfo;
    const state = backend('wireguard').desired(input({ device: dev }), assignedTo(a, 'wireguard', new Map()));
    expect(state.protocol).to.equal(125);
    expect(state.routes).to.deep.equal([{ dst: '10.244.2.0/24', dev: 'flannel-wg', ifindex: 11, onlink: false, peer: '10.244.2.0-24' }]);
    expect(state.devices).to.deep.equal([{ name: 'flannel-wg', ifindex: 11, addresses: ['10.244.1.0/32'] }]);
    expect(state.engine).to.deep.equal([
      { subnet: '10.244.2.0/24', publicIP: '198.18.0.2', port: 51820, publicKey: key(2) },
      { subnet: '10.244.4.0/24', publicIP: '198.18.0.4', port: 51820, publicKey: key(4) },
    ]);
    expect(state.skipped).to.have.length(1);
    expect(state.skipped[0]).to.match(/^peer 10\.244\.3\.0\/24 \(198\.18\.0\.3\): its lease's BackendData\.PublicKey "nope" is not a base64 WireGuard key/);
  });
});
