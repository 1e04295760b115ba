/**
 * Whether the kernel holds what twilld plans for every peer: the same
 * assignment (backends/assignment.ts), the same planners
 * (`Backend.desired`) and the same diff (backends/kernel-state.ts) the
 * agent's reconciler applies, reported instead of applied.
 *
 * The backend instances checked are the ones this node's lease says it
 * terminates, each found in the kernel (its device, its route protocol) as
 * twilld left it, so a node in the middle of a migration is checked as it
 * is. An entry the plan wants that the kernel lacks (or holds differently)
 * is a FAIL: twilld puts it back within its repair interval, so it means
 * twilld is not running or the kernel refuses it. An entry the backend owns
 * that the plan does not want is a WARN (stale). Peers no backend can carry
 * are WARNs, as twilld skips them too.
 */
import { leaseLabel, underlayAddress } from '../subnet/lease';
import type { BackendConfig, NetworkConfig } from '../config';
import type { Lease } from '../subnet';
import type { LinkInfo, Netlink, RouteInfo } from '../netlink';
import {
  AssignedPeers, Backend, InstanceSlot, Intake, KernelState, LeftOver, LocalNode, ObservedState, Peer, Plan,
  assignPeers, backendFactory, backendsInKernel, diffKernelState, fallbackConfig, preferenceOrder,
  terminatedBy, typeOfKey, identityOfKey, withoutFallback,
} from '../../backends';
import { observe } from '../../backends/reconciler';
import { plannedState } from '../../backends/standby';
import { peerReadiness } from '../../backends/readiness';
import { DirectReach } from '../../backends/direct-reach';
import type { Log } from '../observe/logger';
import { checkDevice } from './device-check';
import { defaultDevice, findInKernel, ipv6DeviceOf, keyOf } from './running-instance';
import { carriesIPv6 } from './mtu';
import { Findings, TWILLD_REPAIRS } from './findings';

const TOPIC = 'peer';
const STALE_ADVICE = 'twilld removes entries no lease asks for on its next repair: is twilld running? check `journalctl -u twilld`';
const QUIET: Log = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
const SKIP_ADVICE = 'every node must run one backend and publish its own reachable address: check the network config and the twilld flags (--iface, --public-ip) on that node';

export interface PlanCheck {
  readonly nl: Netlink;
  readonly config: NetworkConfig;
  readonly own: Lease;
  /** Every accepted lease, this node's included (it is left out). */
  readonly leases: readonly Lease[];
  readonly local: LocalNode;
}

/** How twilld sends to a peer, as planned: over which backend type, and whether as plain IP (host-gw, DirectRouting). */
export interface PlannedPath {
  readonly type: string;
  /** Sent as plain IP over IPv4 (host-gw, DirectRouting), per family: each family's own reachability decides. */
  readonly plain: boolean;
  readonly plainV6: boolean;
}

/** One running instance, as found in the kernel. */
interface Instance {
  readonly key: string;
  readonly config: BackendConfig;
  readonly slot: InstanceSlot;
  readonly device?: string;
}

export interface PlanCheckResult {
  /** Each carried peer's planned path (the probe expects it). */
  readonly paths: Map<string, PlannedPath>;
  /** What the running instances receive, as their plans state (the tunnel guard check filters it). */
  readonly intakes: Intake[];
}

/** Checks every peer's entries. */
export async function checkPlannedEntries(c: PlanCheck, out: Findings): Promise<PlanCheckResult> {
  const paths = new Map<string, PlannedPath>();
  const intakes: Intake[] = [];
  const instances = await runningInstances(c);
  // The IPv6 address this node publishes is its lease's: what the peers use.
  const local: LocalNode = carriesIPv6(c.own) ? { ...c.local, publicIPv6: c.own.attrs.publicIPv6! } : c.local;
  const backends = new Map(instances.map((i) => [i.key, backendFactory(i.config.type).create(i.config, { log: QUIET, netlink: c.nl, slot: i.slot })]));
  const direct = new DirectReach(c.nl, c.local.extIface);
  if ([...backends.values()].some((b) => b.usesReach)) {
    await direct.refresh(c.leases.filter((l) => l.key !== c.own.key).map((l) => l.attrs.publicIP)).catch(() => undefined);
  }
  const reach = (ip: string) => direct.isDirect(ip);
  // The agent's own rule on the same facts: bgp carries a peer only while BIRD's route is in the kernel, wireguard once it has a session.
  const readiness = await peerReadiness(backends, c.config.network, () => undefined);
  const assignment = assignPeers({
    order: preferenceOrder(c.config.backend), running: instances.map((i) => i.key), own: c.own, leases: c.leases,
    reach, whyNotReached: (ip) => direct.why(ip),
    ...readiness,
  });
  for (const reason of assignment.skipped) out.warn(TOPIC, reason, SKIP_ADVICE);

  for (const instance of instances) {
    const backend = backends.get(instance.key)!;
    const peers: AssignedPeers = { carried: assignment.carried.get(instance.key) ?? [], leaving: [], known: assignment.known, standby: assignment.standby.get(instance.key) ?? [] };
    const type = instance.config.type;
    if (type === 'alloc') {
      out.ok(TOPIC, `backend alloc programs nothing for its ${peers.carried.length} peer(s); something else must route pod traffic`);
      continue;
    }
    let device: LinkInfo | undefined;
    if (instance.device) {
      device = await c.nl.getLink(instance.device);
      if (!device) {
        out.fail('device', `${instance.device} does not exist: no peer is reachable over ${type}`, TWILLD_REPAIRS);
        continue;
      }
      checkDevice(device, instance.config, c.config, c.local.extIface.mtu, c.own, out, c.config.enableIPv4 ? 4 : 6);
    }
    let ipv6Device: LinkInfo | undefined;
    const ipv6Name = local.publicIPv6 ? ipv6DeviceOf(instance.config, instance.device) : undefined;
    if (ipv6Name) {
      ipv6Device = await c.nl.getLink(ipv6Name);
      if (!ipv6Device) out.fail('device', `${ipv6Name} does not exist: no peer's IPv6 subnet is reachable over ${type}`, TWILLD_REPAIRS);
      else checkDevice(ipv6Device, instance.config, c.config, c.local.extIface.mtu, c.own, out, 6);
    }
    const siblings = instances.filter((i) => i !== instance && i.config.type === type).length;
    let state: KernelState;
    try {
      // IPv6 only: the one vxlan device is the IPv6 one.
      const v6only = !c.config.enableIPv4;
      state = plannedState(backend, { local, own: c.own, device: v6only ? undefined : device, ipv6Device: v6only ? device : ipv6Device, reach, network: c.config.network, siblings }, peers);
    } catch (err) {
      out.fail(TOPIC, `cannot plan the ${instance.key} backend: ${(err as Error).message}`, TWILLD_REPAIRS);
      continue;
    }
    intakes.push(...(state.intake ?? []));
    for (const reason of state.skipped) out.warn(TOPIC, reason, `check twilld on that node; restarting it republishes its lease`);
    const kernel = await observe(c.nl, state);
    // Every route, not only the backend's own: a peer's route held by someone else is reported as wrong.
    const observed: ObservedState = { ...kernel, routes: await c.nl.listRoutes() };
    // Two instances of one type (a settings migration) are told apart by key.
    report(siblings ? instance.key : type, state, observed, diffKernelState(state, observed), peers, backend, out);
    const routeOf = (v6: boolean) => new Map(state.routes.filter((r) => r.dst.includes(':') === v6).map((r) => [r.peer, r]));
    const [ipv4RouteOf, ipv6RouteOf] = [routeOf(false), routeOf(true)];
    const ext = c.local.extIface.index;
    for (const p of peers.carried) {
      paths.set(p.key, { type, plain: ipv4RouteOf.get(p.key)?.ifindex === ext, plainV6: ipv6RouteOf.get(p.key)?.ifindex === ext });
    }
  }
  return { paths, intakes };
}

/** The instances this node's lease lists, with the config, slot and device each runs in the kernel. */
async function runningInstances(c: PlanCheck): Promise<Instance[]> {
  let inKernel: LeftOver[] = [];
  try {
    inKernel = await backendsInKernel(c.nl);
  } catch {
    // the checks that follow report what netlink refuses
  }
  const configured = [c.config.backend, fallbackConfig(c.config.backend)].filter((b): b is BackendConfig => b !== undefined).map(withoutFallback);
  return terminatedBy(c.own.attrs).map((key) => {
    const type = typeOfKey(key);
    const found = findInKernel(key, type, inKernel);
    const config = configured.find((b) => keyOf(b) === key) ?? found?.config ?? { type, settings: { ...identityOfKey(key) } };
    const slot = found?.slot ?? 0;
    return { key, config, slot, device: found?.device ?? defaultDevice(type, c.config, slot) };
  });
}

function label(p: Peer): string {
  return `${leaseLabel(p)} (${underlayAddress({ publicIP: p.publicIP, publicIPv6: p.publicIPv6 ?? null }) ?? p.publicIP})`;
}

function describeRoute(r: { gateway?: string; dev?: string; ifindex?: number; onlink: boolean }): string {
  return `${r.gateway ? `via ${r.gateway} ` : ''}dev ${r.dev ?? r.ifindex ?? '?'}${r.onlink ? ' onlink' : ''}`;
}

/** Turns the diff into findings: per peer (OK, or a FAIL per wrong entry), per shared route, per stale entry. */
function report(type: string, state: KernelState, observed: ObservedState, plan: Plan, peers: AssignedPeers, backend: Backend, out: Findings): void {
  const deviceName = new Map(state.devices.map((d) => [d.ifindex, d.name]));
  const routeIsWrong = new Set(plan.upserts.flatMap((o) => (o.op === 'replaceRoute' ? [o.route.dst] : [])));
  const neighborIsWrong = new Set(plan.upserts.flatMap((o) => (o.op === 'replaceNeighbor' ? [`${o.neighbor.dev}/${o.neighbor.ip}`] : [])));
  const fdbIsWrong = new Set(plan.upserts.flatMap((o) => (o.op === 'replaceFdb' ? [`${o.fdb.dev}/${o.fdb.mac}/${o.fdb.dst}`] : [])));

  for (const a of plan.addresses) {
    if (a.op === 'replaceAddress') {
      const have = observed.devices.get(a.ifindex)?.addresses.map((x) => x.cidr).join(', ') || 'none';
      out.fail('device', `${a.dev}: no address ${a.cidr} (it has ${have})`, TWILLD_REPAIRS);
    }
  }

  // Indexed once: thousands of peers are checked against thousands of entries.
  const routesOf = groupByPeer(state.routes);
  const neighborsOf = groupByPeer(state.devices.flatMap((d) => (d.neighbors ?? []).map((n) => ({ d, n, peer: n.peer }))));
  const fdbOf = groupByPeer(state.devices.flatMap((d) => (d.fdb ?? []).map((f) => ({ d, f, peer: f.peer }))));
  const kernelNeighbor = new Map([...observed.devices].flatMap(([ifindex, o]) => o.neighbors.map((e) => [`${ifindex}/${e.ip}`, e] as const)));
  const kernelFdb = groupBy([...observed.devices].flatMap(([ifindex, o]) => o.fdb.map((e) => ({ key: `${ifindex}/${e.mac}`, e }))), (x) => x.key);

  for (const peer of peers.carried) {
    const routes = routesOf.get(peer.key) ?? [];
    if (routes.length === 0) continue; // skipped by the planner, reported above
    const problems: string[] = [];
    for (const route of routes) if (routeIsWrong.has(route.dst)) problems.push(routeProblem(route, observed.routes));
    for (const { d, n } of neighborsOf.get(peer.key) ?? []) {
      if (!neighborIsWrong.has(`${d.ifindex}/${n.ip}`)) continue;
      const have = kernelNeighbor.get(`${d.ifindex}/${n.ip}`);
      problems.push(!have ? `neighbour ${n.ip} lladdr ${n.mac} on ${d.name} is missing`
        : have.mac !== n.mac ? `neighbour ${n.ip} on ${d.name} has lladdr ${have.mac ?? 'none'}, want ${n.mac}`
          : `neighbour ${n.ip} lladdr ${n.mac} on ${d.name} is ${have.state.join('/') || 'not permanent'}, want permanent`);
    }
    const fdbs = fdbOf.get(peer.key) ?? [];
    for (const { d, f } of fdbs) {
      if (!fdbIsWrong.has(`${d.ifindex}/${f.mac}/${f.dst}`)) continue;
      const same = (kernelFdb.get(`${d.ifindex}/${f.mac}`) ?? []).map((x) => x.e);
      problems.push(same.length === 0 ? `FDB entry ${f.mac} dst ${f.dst} on ${d.name} is missing`
        : `FDB entry ${f.mac} on ${d.name} sends to ${same.map((e) => e.dst ?? 'nowhere').join(', ')}, want dst ${f.dst}`);
    }
    for (const p of problems) out.fail(TOPIC, `${label(peer)}: ${p}`, TWILLD_REPAIRS);
    if (problems.length) continue;
    const families = routes.length > 1 ? ' (IPv4 and IPv6)' : '';
    out.ok(TOPIC, fdbs.length
      ? `${label(peer)}, ${type}: route, neighbour and FDB entry programmed${families} (VTEP ${[...new Set(fdbs.map((x) => x.f.mac))].join(', ')})`
      : `${label(peer)}, ${type}: ${routes.length === 1 ? `route ${describeRoute(routes[0])}` : routes.map((r) => `route ${r.dst} ${describeRoute(r)}`).join(', ')} programmed`);
  }

  for (const route of state.routes.filter((r) => r.peer === undefined)) {
    if (routeIsWrong.has(route.dst)) {
      out.fail(TOPIC, routeProblem(route, observed.routes), TWILLD_REPAIRS);
    } else {
      const table = state.engine ? `; ${peers.carried.length} ${type} peer(s) are in the datapath's own table` : '';
      out.ok(TOPIC, `route ${route.dst} ${describeRoute(route)} programmed${table}`);
    }
  }
  if (peers.carried.length === 0 && !state.routes.some((r) => r.peer === undefined)) out.ok(TOPIC, `no peer leases yet: nothing to program over ${type}`);

  for (const op of plan.deletes) {
    let entry: string;
    if (op.op === 'deleteRoute') {
      const r = observed.routes.find((x) => x.dst === op.route.dst && x.protocol === backend.routeProtocol);
      entry = `route ${op.route.dst}${r ? ` ${describeRoute({ ...r, onlink: false })}` : ''}`;
    } else if (op.op === 'deleteNeighbor') {
      const dev = Number(op.neighbor.dev);
      const n = observed.devices.get(dev)?.neighbors.find((x) => x.ip === op.neighbor.ip);
      entry = `neighbour ${op.neighbor.ip} lladdr ${n?.mac ?? '?'} dev ${deviceName.get(dev) ?? dev}`;
    } else if (op.op === 'deleteFdb') {
      const dev = Number(op.fdb.dev);
      entry = `FDB ${op.fdb.mac} dst ${op.fdb.dst} dev ${deviceName.get(dev) ?? dev}`;
    } else {
      continue;
    }
    out.warn(TOPIC, `${entry} matches no lease (stale)`, STALE_ADVICE);
  }
}

function routeProblem(want: { dst: string; gateway?: string; dev: string; ifindex: number; onlink: boolean }, routes: readonly RouteInfo[]): string {
  const text = `route ${want.dst} ${describeRoute(want)}`;
  const have = routes.filter((r) => r.dst === want.dst && r.type === 'unicast');
  if (have.length === 0) return `${text} is missing`;
  return `${text} is wrong: the kernel has ${have.map((r) => `"${describeRoute(r)}"`).join(', ')}`;
}

function groupBy<T>(items: readonly T[], key: (t: T) => string | undefined): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k === undefined) continue;
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

function groupByPeer<T extends { peer?: string }>(items: readonly T[]): Map<string, T[]> {
  return groupBy(items, (t) => t.peer);
}
