/**
 * Whether the kernel holds, for every peer lease, what the running backend
 * programs for it (DESIGN §4), read through netlink:
 *   vxlan    route <subnet> via <subnet IP> dev flannel.<VNI> onlink,
 *            neighbour <subnet IP> lladdr <VtepMAC> permanent,
 *            FDB <VtepMAC> dst <PublicIP>
 *            (DirectRouting, peer on-link: route via <PublicIP> dev <ext>)
 *   host-gw  route <subnet> via <PublicIP> dev <ext>
 *   ipip     route <subnet> via <PublicIP> dev flannel.ipip onlink
 *   udp      route <Network> dev flannel0 (while two udp backends run, a
 *            route <subnet> dev <TUN> per peer)
 * plus the backend's own device. Device names and route protocols are the
 * ones of the instance actually running (running-instance.ts): after a
 * settings migration vxlan may run on flannel.2 or vx4789.2 with protocol
 * 121, udp on flannel1 with protocol 124. A missing or wrong entry is a FAIL (twilld
 * puts it back within its repair interval, so it means twilld is not
 * running or the kernel refuses it); an entry no lease asks for is a WARN.
 * Peers this node cannot carry (another backend, no public IP, a bad
 * VtepMAC) are WARNs, as twilld skips them too.
 */
import type { NetworkConfig } from '../config';
import type { ExternalInterface } from '../iface';
import type { Lease } from '../subnet';
import type { FdbEntry, LinkInfo, Netlink, NeighborInfo, RouteInfo } from '../netlink';
import { ownerOfProtocol } from '../../backends/route-protocols';
import { onLink, partitionPeers } from '../../backends/peers';
import type { VxlanSettings } from '../../backends/vxlan/settings';
import { UDP_BESIDE_DEVICE, UDP_DEVICE } from '../../backends/udp';
import { IPIP_DEVICE } from '../../backends/ipip';
import { boolSetting } from '../../backends/settings';
import { Findings, TWILLD_REPAIRS } from './findings';
import { podMtu } from './mtu';
import { defaultDevice, defaultInstance, RunningInstance, vxlanSettingsOrDefault } from './running-instance';

const TOPIC = 'peer';
const STALE_ADVICE = 'twilld removes entries no lease asks for on its next repair: is twilld running? check `journalctl -u twilld`';
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * The device a backend creates on this node, if it has one: the running
 * instance's when given (see running-instance.ts), else the default name.
 */
export function overlayDevice(backend: string, config: NetworkConfig, instance?: RunningInstance): string | undefined {
  return instance?.type === backend ? instance.device : defaultDevice(backend, config);
}

export interface PeerEntriesCheck {
  readonly nl: Netlink;
  readonly config: NetworkConfig;
  /** The backend this node runs. */
  readonly backend: string;
  readonly own: Lease;
  /** Every lease, this node's included (it is skipped). */
  readonly leases: readonly Lease[];
  readonly ext: ExternalInterface;
  /** Prefix length of the external interface's address, for DirectRouting's on-link test. */
  readonly extPrefixLen?: number;
  /** The instance of the backend running in the kernel (its device and route protocol); default: the default names, slot 0. */
  readonly instance?: RunningInstance;
}

function instanceOfCheck(c: PeerEntriesCheck): RunningInstance {
  return c.instance?.type === c.backend ? c.instance : defaultInstance(c.backend, c.config);
}

/** A route the backend wants for a peer. */
interface WantedRoute {
  readonly dst: string;
  /** Absent for a route into a TUN device (userspace ipip). */
  readonly gateway?: string;
  readonly dev: string;
  readonly ifindex: number;
  readonly onlink: boolean;
}

export async function checkPeerEntries(c: PeerEntriesCheck, out: Findings): Promise<void> {
  const { carried, skipped } = partitionPeers(c.leases, c.backend, c.own);
  for (const reason of skipped) {
    out.warn(TOPIC, reason, 'every node must run one backend and publish its own reachable address: check the network config and the twilld flags (--iface, --public-ip) on that node');
  }
  switch (c.backend) {
    case 'vxlan':
      return checkVxlan(c, carried, out);
    case 'host-gw':
      return checkRoutes(c, carried, out, (peer) => viaExternal(c, peer));
    case 'ipip':
      return checkIpip(c, carried, out);
    case 'udp':
      return checkUdp(c, carried, out);
    case 'alloc':
      out.ok(TOPIC, `backend alloc programs nothing for its ${carried.length} peer(s); something else must route pod traffic`);
      return;
    default:
      out.warn(TOPIC, `backend ${c.backend} keeps its peers in twilld's own table; their entries are not checked here`,
        'use the probe (--peer <subnet>) to test a peer end to end');
  }
}

function viaExternal(c: PeerEntriesCheck, peer: Lease): WantedRoute {
  return { dst: peer.subnet.toString(), gateway: peer.attrs.publicIP, dev: c.ext.name, ifindex: c.ext.index, onlink: false };
}

function label(peer: Lease): string {
  return `${peer.subnet.toString()} (${peer.attrs.publicIP})`;
}

// ---- vxlan ----

async function checkVxlan(c: PeerEntriesCheck, peers: Lease[], out: Findings): Promise<void> {
  const s = vxlanSettingsOrDefault(c.config);
  const instance = instanceOfCheck(c);
  const name = instance.device ?? defaultDevice('vxlan', c.config)!;
  const link = await c.nl.getLink(name);
  if (!link) {
    out.fail('device', `${name} does not exist: no peer is reachable over vxlan`, TWILLD_REPAIRS);
    return;
  }
  await checkVxlanDevice(c, s, link, out);

  const [routes, neighbors, fdb] = await Promise.all([
    c.nl.listRoutes({ family: 4 }),
    c.nl.listNeighbors(link.index, 4),
    c.nl.listFdb(link.index),
  ]);
  const wantedRoutes: string[] = [];
  const wantedNeighbors: string[] = [];
  const wantedMacs: string[] = [];
  for (const peer of peers) {
    const data = peer.attrs.backendData as Partial<Record<string, unknown>> | undefined;
    const mac = typeof data?.VtepMAC === 'string' ? data.VtepMAC.toLowerCase() : undefined;
    if (!mac || !MAC_PATTERN.test(mac)) {
      out.warn(TOPIC, `${label(peer)} publishes no valid BackendData.VtepMAC; no node can reach it over vxlan`,
        `check twilld on ${peer.attrs.publicIP}; restarting it republishes its lease`);
      continue;
    }
    wantedRoutes.push(peer.subnet.toString());
    if (s.directRouting && onLink(peer.attrs.publicIP, c.ext.ipv4, c.extPrefixLen)) {
      const problem = routeProblem(viaExternal(c, peer), routes);
      if (problem) out.fail(TOPIC, `${label(peer)}: ${problem}`, TWILLD_REPAIRS);
      else out.ok(TOPIC, `${label(peer)}, vxlan DirectRouting: route via ${peer.attrs.publicIP} dev ${c.ext.name} programmed`);
      continue;
    }
    const gateway = peer.subnet.ip.toString();
    wantedNeighbors.push(gateway);
    wantedMacs.push(mac);
    const problems = [
      routeProblem({ dst: peer.subnet.toString(), gateway, dev: link.name, ifindex: link.index, onlink: true }, routes),
      neighborProblem(gateway, mac, link.name, neighbors),
      fdbProblem(mac, peer.attrs.publicIP, link.name, fdb),
    ].filter((p): p is string => p !== undefined);
    for (const p of problems) out.fail(TOPIC, `${label(peer)}: ${p}`, TWILLD_REPAIRS);
    if (problems.length === 0) out.ok(TOPIC, `${label(peer)}, vxlan: route, neighbour and FDB entry programmed (VTEP ${mac})`);
  }
  if (peers.length === 0) out.ok(TOPIC, 'no peer leases yet: nothing to program');

  const stale = [
    ...routes.filter((r) => r.protocol === instance.protocol && !wantedRoutes.includes(r.dst)).map((r) => `route ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.dev ?? r.ifindex}`),
    ...neighbors.filter((n) => n.permanent && !wantedNeighbors.includes(n.ip)).map((n) => `neighbour ${n.ip} lladdr ${n.mac ?? '?'} dev ${name}`),
    ...fdb.filter((e) => e.dst !== undefined && !wantedMacs.includes(e.mac)).map((e) => `FDB ${e.mac} dst ${e.dst} dev ${name}`),
  ];
  for (const entry of stale) {
    out.warn(TOPIC, `${entry} matches no lease (stale)`, STALE_ADVICE);
  }
}

async function checkVxlanDevice(c: PeerEntriesCheck, s: VxlanSettings, link: LinkInfo, out: Findings): Promise<void> {
  const problems: string[] = [];
  const v = link.vxlan;
  if (link.kind !== 'vxlan' || !v) {
    problems.push(`it is a ${link.kind ?? 'plain'} device, not vxlan`);
  } else {
    if (v.vni !== s.vni) problems.push(`VNI ${v.vni}, want ${s.vni}`);
    if (v.port !== s.port) problems.push(`UDP port ${v.port}, want ${s.port}`);
    if (v.learning !== s.learning) problems.push(`learning ${v.learning ? 'on' : 'off'}, want ${s.learning ? 'on' : 'off'}`);
  }
  if (!link.up) problems.push('it is down');
  const mtu = podMtu('vxlan', c.ext.mtu, c.config);
  if (link.mtu !== mtu) problems.push(`MTU ${link.mtu}, want ${mtu}`);
  const published = (c.own.attrs.backendData as Partial<Record<string, unknown>> | undefined)?.VtepMAC;
  const macProblem = typeof published === 'string' && link.mac && published.toLowerCase() !== link.mac
    ? `MAC ${link.mac}, but this node's lease publishes VtepMAC ${published}: peers address the wrong VTEP`
    : undefined;
  const want = `${c.own.subnet.ip.toString()}/32`;
  const addrs = await c.nl.listAddresses(link.index, 4);
  if (!addrs.some((a) => a.cidr === want)) problems.push(`no address ${want} (it has ${addrs.map((a) => a.cidr).join(', ') || 'none'})`);
  for (const p of problems) out.fail('device', `${link.name}: ${p}`, TWILLD_REPAIRS);
  if (macProblem) out.fail('device', `${link.name}: ${macProblem}`, 'restart twilld: it republishes its lease with the device\'s MAC');
  if (problems.length === 0 && !macProblem) {
    out.ok('device', `${link.name}: vxlan VNI ${s.vni}, UDP port ${s.port}, up, MTU ${link.mtu}, MAC ${link.mac ?? '?'} as in the lease, address ${want}`);
  }
}

function neighborProblem(ip: string, mac: string, dev: string, have: readonly NeighborInfo[]): string | undefined {
  const n = have.find((e) => e.ip === ip);
  if (!n) return `neighbour ${ip} lladdr ${mac} on ${dev} is missing`;
  if (n.mac !== mac) return `neighbour ${ip} on ${dev} has lladdr ${n.mac ?? 'none'}, want ${mac}`;
  if (!n.permanent) return `neighbour ${ip} lladdr ${mac} on ${dev} is ${n.state.join('/') || 'not permanent'}, want permanent`;
  return undefined;
}

function fdbProblem(mac: string, dst: string, dev: string, have: readonly FdbEntry[]): string | undefined {
  const entries = have.filter((e) => e.mac === mac);
  if (entries.length === 0) return `FDB entry ${mac} dst ${dst} on ${dev} is missing`;
  if (!entries.some((e) => e.dst === dst)) {
    return `FDB entry ${mac} on ${dev} sends to ${entries.map((e) => e.dst ?? 'nowhere').join(', ')}, want dst ${dst}`;
  }
  return undefined;
}

// ---- routes (host-gw, ipip, vxlan) ----

function describeRoute(r: { gateway?: string; dev?: string; ifindex?: number; onlink: boolean }): string {
  return `${r.gateway ? `via ${r.gateway} ` : ''}dev ${r.dev ?? r.ifindex ?? '?'}${r.onlink ? ' onlink' : ''}`;
}

function routeProblem(want: WantedRoute, routes: readonly RouteInfo[]): string | undefined {
  const text = `route ${want.dst} ${describeRoute(want)}`;
  const have = routes.filter((r) => r.dst === want.dst && r.type === 'unicast');
  if (have.length === 0) return `${text} is missing`;
  const good = have.find((r) => r.gateway === want.gateway && r.ifindex === want.ifindex && (r.onlink || !want.onlink));
  if (!good) return `${text} is wrong: the kernel has ${have.map((r) => `"${describeRoute(r)}"`).join(', ')}`;
  return undefined;
}

async function checkRoutes(c: PeerEntriesCheck, peers: Lease[], out: Findings, wanted: (peer: Lease) => WantedRoute): Promise<void> {
  const routes = await c.nl.listRoutes({ family: 4 });
  const protocol = instanceOfCheck(c).protocol;
  for (const peer of peers) {
    const want = wanted(peer);
    const problem = routeProblem(want, routes);
    if (problem) out.fail(TOPIC, `${label(peer)}: ${problem}`, TWILLD_REPAIRS);
    else out.ok(TOPIC, `${label(peer)}, ${c.backend}: route ${describeRoute(want)} programmed`);
  }
  if (peers.length === 0) out.ok(TOPIC, 'no peer leases yet: nothing to program');
  const subnets = new Set(peers.map((p) => p.subnet.toString()));
  for (const r of routes.filter((r) => protocol !== undefined && r.protocol === protocol && !subnets.has(r.dst))) {
    out.warn(TOPIC, `route ${r.dst} ${describeRoute(r)} matches no lease (stale)`, STALE_ADVICE);
  }
}

// ---- udp ----

/**
 * udp programs no per-peer entries in the kernel: its TUN and one route to
 * the whole network; the peers live in the engine's table. While two udp
 * backends run (a Port migration), the network route cannot lead into both
 * TUNs, so each routes its own peers one by one: then every peer needs a
 * route into this instance's TUN, or into the other udp backend's TUN for a
 * peer that does not run this instance yet.
 */
async function checkUdp(c: PeerEntriesCheck, peers: Lease[], out: Findings): Promise<void> {
  const name = instanceOfCheck(c).device ?? UDP_DEVICE;
  const link = await checkDevice(c, 'udp', name, out, () => " (the userspace datapath's TUN device)");
  if (!link) return;
  const network = c.config.network?.toString();
  if (!network) return;
  const routes = await c.nl.listRoutes({ family: 4 });
  const want: WantedRoute = { dst: network, dev: link.name, ifindex: link.index, onlink: false };
  const problem = routeProblem(want, routes);
  if (!problem) {
    out.ok(TOPIC, `route ${network} dev ${name} programmed; ${peers.length} udp peer(s) are in the datapath's own table`);
    return;
  }
  const others = new Map<number, string>();
  for (const dev of [UDP_DEVICE, UDP_BESIDE_DEVICE].filter((d) => d !== name)) {
    const other = await c.nl.getLink(dev);
    if (other) others.set(other.index, other.name);
  }
  if (others.size === 0) {
    out.fail(TOPIC, problem, TWILLD_REPAIRS);
    return;
  }
  // Two udp backends run: each routes its own peers.
  const udpRoute = (r: RouteInfo) => r.type === 'unicast' && ownerOfProtocol(r.protocol)?.type === 'udp';
  for (const peer of peers) {
    const dst = peer.subnet.toString();
    const mine = routes.find((r) => udpRoute(r) && r.dst === dst && r.ifindex === link.index);
    const theirs = routes.find((r) => udpRoute(r) && r.dst === dst && r.ifindex !== undefined && others.has(r.ifindex));
    if (mine) {
      out.ok(TOPIC, `${label(peer)}, udp: route dev ${name} programmed (two udp backends run; each routes its own peers)`);
    } else if (theirs) {
      out.ok(TOPIC, `${label(peer)}, udp: route dev ${others.get(theirs.ifindex!)} programmed by the other udp backend (the peer does not run this one yet)`);
    } else {
      const problem = routeProblem({ dst, dev: link.name, ifindex: link.index, onlink: false }, routes);
      out.fail(TOPIC, `${label(peer)}: ${problem ?? `route ${dst} dev ${name} is missing`}`, TWILLD_REPAIRS);
    }
  }
  if (peers.length === 0) out.ok(TOPIC, `no peer leases yet: nothing to route through ${name} or ${[...others.values()].join(', ')}`);
}

/** The backend's device exists, is up and has the pods' MTU; resolves with it, or undefined (reported) when it is missing. */
async function checkDevice(c: PeerEntriesCheck, backend: 'udp' | 'ipip', name: string, out: Findings, note: (link: LinkInfo) => string): Promise<LinkInfo | undefined> {
  const link = await c.nl.getLink(name);
  if (!link) {
    out.fail('device', `${name} does not exist: no peer is reachable over ${backend}`, TWILLD_REPAIRS);
    return undefined;
  }
  const mtu = podMtu(backend, c.ext.mtu);
  if (!link.up || link.mtu !== mtu) {
    out.fail('device', `${name}: ${[!link.up ? 'it is down' : '', link.mtu !== mtu ? `MTU ${link.mtu}, want ${mtu}` : ''].filter(Boolean).join('; ')}`, TWILLD_REPAIRS);
  } else {
    out.ok('device', `${name}: up, MTU ${link.mtu}${note(link)}`);
  }
  return link;
}

async function checkIpip(c: PeerEntriesCheck, peers: Lease[], out: Findings): Promise<void> {
  const device = instanceOfCheck(c).device ?? IPIP_DEVICE;
  const link = await checkDevice(c, 'ipip', device, out, (l) => (l.kind === 'tun' ? ' (userspace mode: a TUN device of the userspace datapath)' : ''));
  if (!link) return;
  let directRouting = false;
  try {
    directRouting = c.config.backend.type === 'ipip' && boolSetting(c.config.backend, 'DirectRouting', false);
  } catch {
    // a bad setting is reported with the config
  }
  await checkRoutes(c, peers, out, (peer) =>
    directRouting && onLink(peer.attrs.publicIP, c.ext.ipv4, c.extPrefixLen)
      ? viaExternal(c, peer)
      : link.kind === 'tun'
        // Userspace mode: the engine behind the TUN picks the peer, so the route only leads into the device.
        ? { dst: peer.subnet.toString(), dev: link.name, ifindex: link.index, onlink: false }
        : { dst: peer.subnet.toString(), gateway: peer.attrs.publicIP, dev: link.name, ifindex: link.index, onlink: true });
}
