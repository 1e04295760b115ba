/**
 * `twill diagnose`, top to bottom: read the cluster from etcd (or, in
 * Kubernetes mode, from the Nodes and the net-conf), pick the
 * external interface as twilld does, then check the kernel's capabilities,
 * the MTU, the sysctls, checksum offload, this node's lease and every
 * peer's kernel entries — and, given a peer, probe it end to end.
 *
 * Each check turns what it sees into findings (findings.ts); none throws for
 * a condition of the node, so one broken part never hides the others. The
 * findings come back in a fixed order of topics, whatever order the checks
 * ran in.
 */
import type { Etcd3 } from 'etcd3';
import { InterfaceSelection, InterfaceSelectionError, selectInterface } from '../iface';
import { Netlink } from '../netlink';
import { Lease } from '../subnet';
import { NO_PUBLIC_IP, carriesIPv4, heldSubnets, leaseLabel, underlayAddress } from '../subnet/lease';
import type { NetworkConfig } from '../config';
import { EtcdRegistry } from '../subnet/etcd';
import { primaryBackendType, terminatedBy } from '../../backends/assignment';
import { typeOfKey } from '../../backends/instance';
import { ClusterView, readClusterView } from './cluster-view';
import { readKubeClusterView } from './kube-cluster-view';
import type { KubeCli } from '../kube/cluster-read';
import { Finding, Findings } from './findings';
import { checkKernelSupport } from './kernel-support';
import { carriesIPv6, checkMtu } from './mtu';
import { checkOffload } from './offload';
import { checkPlannedEntries, PlannedPath } from './plan-check';
import { overlayDevice, RunningInstance, runningInstance } from './running-instance';
import { findPeerLease, probePeer, ProbeReport } from './probe';
import { checkNeighbourTable, checkSysctls } from './sysctls';
import { checkGuard } from './guard-check';
import { checkWireguard } from './wireguard-check';
import { checkBgp } from './bgp-check';

/** Where the cluster is read from: etcd, or the Kubernetes API (twilld --kube-subnet-mgr). */
export type ClusterStore =
  | { readonly kind: 'etcd'; readonly etcd: Etcd3; readonly prefix: string; readonly endpoints: readonly string[] }
  | { readonly kind: 'kube'; readonly kube: KubeCli };

export interface DiagnosisOptions {
  readonly store: ClusterStore;
  /** As twilld's --iface (names or addresses, first match wins); empty: the default-route interface. */
  readonly iface: readonly string[];
  readonly publicIP?: string;
  readonly subnetFile: string;
  /** A peer to probe: its subnet, its public IP, or an address inside its subnet (either family). */
  readonly peer?: string;
  /** Capture time of the probe; default 2 s. */
  readonly probeMs?: number;
  /** As twilld's --tunnel-guard (default true): whether the tunnel guard should be in force. */
  readonly tunnelGuard?: boolean;
}

export interface Diagnosis {
  readonly findings: readonly Finding[];
  readonly probe?: ProbeReport;
  readonly failed: boolean;
}

/** The order findings are shown in. */
const TOPIC_ORDER = ['kernel', 'interface', 'etcd', 'kube', 'config', 'mtu', 'sysctl', 'offload', 'lease', 'device', 'peer', 'guard', 'probe'];

export async function runDiagnosis(o: DiagnosisOptions): Promise<Diagnosis> {
  const out = new Findings();
  const s = o.store;
  const view = s.kind === 'etcd' ? await readClusterView(s.etcd, s.prefix, s.endpoints, out) : await readKubeClusterView(s.kube, out);
  const local = chooseInterface(o, out, view?.config);

  let nl: Netlink;
  try {
    nl = Netlink.open();
  } catch (err) {
    out.fail('kernel', `cannot open rtnetlink: ${(err as Error).message}`, 'run twill diagnose as root on the node (it needs CAP_NET_ADMIN)');
    return finish(out);
  }
  let probe: ProbeReport | undefined;
  try {
    const ext = local && (await describeInterface(nl, local, out));
    const own = view && local ? await findOwnLease(o, view, underlayAddress({ publicIP: local.publicIP, publicIPv6: local.publicIPv6 ?? null }) ?? local.publicIP, out) : undefined;
    const backend = own ? primaryBackendType(own.attrs) : view?.config.backend.type;
    if (own && view && backend !== view.config.backend.type) {
      out.warn('lease', `this node's lease says backend ${backend}, the network config says ${view.config.backend.type}`,
        'restart twilld on every node so that all run the configured backend');
    }

    await checkKernelSupport(nl, backend, out);
    if (local) await checkMtu({ ext: local.iface, backend, config: view?.config, own, subnetFile: o.subnetFile }, out);
    // The instance of the backend that runs here (after a settings migration: flannel.2, flannel1, protocol 121…).
    const instance: RunningInstance | undefined = backend && view ? await runningInstance(nl, backend, view.config) : undefined;
    const device = backend && view ? overlayDevice(backend, view.config, instance) : undefined;
    const deviceExists = device !== undefined && (await nl.getLink(device)) !== undefined;
    checkSysctls({ extIface: local?.iface.name, overlayDevice: deviceExists ? device : undefined, ipv6: carriesIPv6(own) }, out);
    if (view) checkNeighbourTable(view.leases.filter((l) => l.key !== own?.key).length, out);
    if (backend === 'vxlan' && device && deviceExists && local) {
      await checkOffload({ device, natted: ext?.natted ?? false }, out);
    }
    let paths = new Map<string, PlannedPath>();
    if (view && own && local && backend) {
      // The plan check adds the own lease's PublicIPv6: vxlan's plan then states its IPv6 entries and intake, which the guard check compares.
      const planned = await checkPlannedEntries({ nl, config: view.config, own, leases: view.leases, local: { extIface: local.iface, publicIP: local.publicIP } }, out);
      paths = planned.paths;
      await checkGuard({ enabled: o.tunnelGuard ?? true, own, leases: view.leases, intakes: planned.intakes }, out);
    }
    if (view && own && backend === 'wireguard') await checkWireguard(own, view.leases, out);
    if (view && own && terminatedBy(own.attrs).some((k) => typeOfKey(k) === 'bgp')) await checkBgp(nl, own, view.leases, paths, out);

    if (o.peer !== undefined) {
      if (!view || !own || !local || !backend) {
        out.fail('probe', `cannot probe ${o.peer}: ${!local ? 'no external interface' : !view ? `the cluster could not be read from ${o.store.kind === 'etcd' ? 'etcd' : 'the Kubernetes API'}` : 'this node holds no lease'}`,
          'fix the FAIL findings above first');
      } else {
        const peer = findPeerLease(o.peer, view.leases);
        if (!peer) {
          out.fail('probe', `no lease matches --peer ${o.peer}`,
            `give a peer's subnet, public IP or an address inside its subnet; leases: ${view.leases.map((l) => `${leaseLabel(l)} (${underlayAddress(l.attrs) ?? l.attrs.publicIP})`).join(', ') || 'none'}`);
        } else if (peer.key === own.key) {
          out.fail('probe', `--peer ${o.peer} is this node's own lease ${leaseLabel(own)}`, 'name another node\'s subnet or public IP');
        } else {
          // The family the operator named the peer in, or IPv6 for a peer that holds no IPv4 subnet.
          const family = o.peer.includes(':') || !carriesIPv4(peer) ? 6 : 4;
          probe = await probePeer({
            nl, config: view.config, backend, own, peer, path: paths.get(peer.key), ext: local.iface, extMac: ext?.mac, durationMs: o.probeMs, family,
          }, out);
        }
      }
    }
  } finally {
    nl.close();
  }
  return finish(out, probe);
}

function finish(out: Findings, probe?: ProbeReport): Diagnosis {
  const rank = (f: Finding) => {
    const i = TOPIC_ORDER.indexOf(f.topic);
    return i < 0 ? TOPIC_ORDER.length : i;
  };
  // Array.prototype.sort is stable: within a topic the checks' order stays.
  const findings = [...out.all].sort((a, b) => rank(a) - rank(b));
  return { findings, probe, failed: out.failed };
}

function chooseInterface(o: DiagnosisOptions, out: Findings, config?: NetworkConfig): InterfaceSelection | undefined {
  try {
    return selectInterface({ iface: o.iface.length ? o.iface : undefined, publicIP: o.publicIP, wantIPv4: config?.enableIPv4, wantIPv6: config?.enableIPv6 });
  } catch (err) {
    const flag = err instanceof InterfaceSelectionError ? err.flag : '--iface';
    out.fail('interface', `no external interface: ${(err as Error).message}`,
      `give the ${flag} twilld runs with (twill diagnose picks the interface the same way)`);
    return undefined;
  }
}

interface InterfaceFacts {
  readonly mac?: string;
  readonly prefixLen?: number;
  /** The public IP is not an address of the interface. */
  readonly natted: boolean;
}

async function describeInterface(nl: Netlink, local: InterfaceSelection, out: Findings): Promise<InterfaceFacts> {
  const { iface, publicIP } = local;
  // An IPv6-only node publishes PublicIPv6 alone (PublicIP "0.0.0.0").
  const v6only = publicIP === NO_PUBLIC_IP && local.publicIPv6 !== undefined;
  const published = v6only ? local.publicIPv6! : publicIP;
  const own = v6only ? iface.ipv6 : iface.ipv4;
  const [link, addrs] = await Promise.all([nl.getLink(iface.index), nl.listAddresses(iface.index, v6only ? 6 : 4)]);
  const prefixLen = addrs.find((a) => a.address === own)?.prefixLen;
  const natted = !addrs.some((a) => a.address === published);
  const addr = `${own ?? (v6only ? 'no IPv6' : 'no IPv4')}${prefixLen !== undefined ? `/${prefixLen}` : ''}`;
  const what = `${iface.name} (${addr}, MTU ${iface.mtu}), chosen because ${local.reason}; public IP ${published}${natted ? ' (not on the interface: NAT)' : ''}`;
  if (!link || !link.up) {
    out.fail('interface', `${what}, but it is down`, `bring it up: ip link set ${iface.name} up`);
  } else if (!link.lowerUp) {
    out.fail('interface', `${what}, but it has no carrier`, `check the cable/virtual NIC of ${iface.name}`);
  } else {
    out.ok('interface', what);
  }
  return { mac: link?.mac, prefixLen, natted };
}

async function findOwnLease(o: DiagnosisOptions, view: ClusterView, publicIP: string, out: Findings): Promise<Lease | undefined> {
  const mine = view.leases.filter((l) => underlayAddress(l.attrs) === publicIP);
  if (o.store.kind === 'kube') return findOwnNode(view, mine, publicIP, o.store.kube, out);
  if (mine.length === 0) {
    out.fail('lease', `no lease in etcd carries this node's public IP ${publicIP} (${view.leases.length} lease(s) held by others)`,
      'is twilld running on this node? check `journalctl -u twilld`; if it publishes another address, pass the --iface/--public-ip it runs with');
    return undefined;
  }
  if (mine.length > 1) {
    out.warn('lease', `${mine.length} leases carry this node's public IP ${publicIP}: ${mine.map((l) => leaseLabel(l)).join(', ')}`,
      'peers program each of them; delete the ones this node does not use (etcdctl del <prefix>/subnets/<key>)');
  }
  const own = mine[0];
  const peers = view.leases.length - mine.length;
  const data = (own.attrs.backendData ?? own.attrs.backendV6Data) as Partial<Record<string, unknown>> | undefined;
  const vtep = typeof data?.VtepMAC === 'string' ? `, VTEP ${data.VtepMAC}` : '';
  const what = `this node (${publicIP}) holds ${ownSubnets(own)}, backend ${primaryBackendType(own.attrs)}${vtep}; ${peers} peer lease(s)`;
  if (own.etcdLeaseId === undefined) {
    out.ok('lease', `${what}; a reservation (never expires)`);
    return own;
  }
  let ttl: number | undefined;
  try {
    ttl = await new EtcdRegistry(o.store.etcd, o.store.prefix).timeToLive(own.etcdLeaseId);
  } catch {
    ttl = undefined; // reported as unknown
  }
  if (ttl !== undefined && ttl <= 0) {
    out.fail('lease', `${what}, but its etcd lease has expired`, 'is twilld running? it renews the lease; check `journalctl -u twilld`');
  } else {
    out.ok('lease', `${what}; expires in ${ttl === undefined ? 'unknown time' : formatDuration(ttl)}`);
  }
  return own;
}

/**
 * Kubernetes mode: this node's Node, found as the etcd lease is, by the
 * public IP its agent publishes. A Node's lease has no TTL (it lives as
 * long as the Node), so there is no expiry to check.
 */
function findOwnNode(view: ClusterView, mine: readonly Lease[], publicIP: string, kube: KubeCli, out: Findings): Lease | undefined {
  const nodeName = (l: Lease): string => JSON.stringify(view.nodeOf?.get(l.key) ?? '?');
  if (mine.length === 0) {
    out.fail('lease', `no Node carries this node's public IP ${publicIP} in its annotation ${kube.names.publicIP} (${view.leases.length} peer Node(s) found)`,
      'is the twill pod running on this node? check `kubectl -n kube-system logs` of it; if it publishes another address, pass the --iface/--public-ip it runs with');
    return undefined;
  }
  if (mine.length > 1) {
    out.warn('lease', `${mine.length} Nodes carry this node's public IP ${publicIP}: ${mine.map((l) => `${nodeName(l)} (${l.subnet.toString()})`).join(', ')}`,
      `peers program each of them; set ${kube.names.publicIPOverwrite} on the Nodes that share an address, or remove stale Nodes (kubectl delete node)`);
  }
  const own = mine[0];
  const peers = view.leases.length - mine.length;
  const data = (own.attrs.backendData ?? own.attrs.backendV6Data) as Partial<Record<string, unknown>> | undefined;
  const vtep = typeof data?.VtepMAC === 'string' ? `, VTEP ${data.VtepMAC}` : '';
  out.ok('lease', `this node (${publicIP}) is Node ${nodeName(own)}, podCIDR ${ownSubnets(own)}, backend ${primaryBackendType(own.attrs)}${vtep}; ${peers} peer Node(s)`);
  return own;
}

/** The subnets a lease holds (IPv4, IPv6 or both), and the IPv6 address it publishes when it holds an IPv6 subnet. */
function ownSubnets(own: Lease): string {
  const held = heldSubnets(own).map((n) => n.toString()).join(' and ');
  return own.ipv6Subnet ? `${held} (public IPv6 ${own.attrs.publicIPv6 ?? 'none'})` : held;
}

function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min` : `${seconds} s`;
}
