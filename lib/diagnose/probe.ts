/**
 * The probe of `twill diagnose --peer`: ICMP echo requests to the peer's pod
 * gateway (its subnet's first address + 1, e.g. 10.244.2.1, which the CNI
 * bridge holds) while libpcap captures the external interface, then what
 * left the node — encapsulation, VNI, inner and outer addresses — and
 * whether replies came back. In one address family: IPv6 (the gateway
 * fd00:10:244:2::1, over the peer's PublicIPv6) when the peer was named by
 * an IPv6 subnet or address, or holds no IPv4 subnet.
 *
 * Network safety: the only address probed is that gateway, computed from
 * the peer's lease and checked to lie inside the peer's subnet and the
 * cluster network; nothing else is ever sent to.
 *
 * Failure semantics: nothing leaving, leaving wrongly encapsulated or to
 * the wrong node, and no reply are FAILs with advice; a capture that cannot
 * be started is a WARN (the echo replies are still counted). Never throws
 * for network conditions.
 */
import { carriesIPv4, leaseLabel } from '../subnet/lease';
import { execFile } from 'child_process';
import type { NetworkConfig } from '../config';
import type { ExternalInterface } from '../iface';
import { IP, IPNet } from '../ip';
import type { Lease } from '../subnet';
import type { Netlink, RouteInfo } from '../netlink';
import { intSetting } from '../../backends/settings';
import type { PlannedPath } from './plan-check';
import { vxlanSettings } from '../../backends/vxlan/settings';
import { CaptureError, CapturedFrame, PacketCapture } from './capture';
import { Findings, TWILLD_REPAIRS } from './findings';
import { DEFAULT_FRAME_PORTS, describeFrame, Encapsulation, FramePorts, icmpName } from './frame';

const TOPIC = 'probe';
const ECHO_REQUEST = 8;
const ECHO_REPLY = 0;

export interface ProbeSetup {
  readonly nl: Netlink;
  readonly config: NetworkConfig;
  /** The backend this node runs. */
  readonly backend: string;
  readonly own: Lease;
  readonly peer: Lease;
  readonly ext: ExternalInterface;
  /** The external interface's MAC, to tell frames leaving from frames arriving. */
  readonly extMac?: string;
  /** How twilld's plan sends to the peer (twill diagnose's plan check); absent: the configured backend, encapsulated. */
  readonly path?: PlannedPath;
  /** How long to capture; default 2 s. */
  readonly durationMs?: number;
  /** The family probed; default 4. */
  readonly family?: 4 | 6;
}

/** What the probe saw, for --json. */
export interface ProbeReport {
  readonly target: string;
  readonly peer: { readonly subnet: string; readonly publicIP: string };
  readonly expected: string;
  readonly sent: number;
  readonly received: number;
  readonly left: readonly string[];
  readonly returned: readonly string[];
  readonly icmpErrors: readonly string[];
  readonly captureError?: string;
}

/** The lease `spec` names: its subnet (`10.244.2.0/24` or `10.244.2.0-24`), its public IP, or an address inside its subnet; in dual stack the IPv6 ones too. */
export function findPeerLease(spec: string, leases: readonly Lease[]): Lease | undefined {
  const text = spec.trim().replace(/^(\d+\.\d+\.\d+\.\d+)-(\d+)$/, '$1/$2');
  const family = text.includes(':') ? 6 : 4;
  // An IPv6-only lease's empty IPv4 part (0.0.0.0/0) contains every address: it names no peer.
  const subnetOf = (l: Lease) => (family === 6 ? l.ipv6Subnet : carriesIPv4(l) ? l.subnet : undefined);
  if (text.includes('/')) {
    const net = IPNet.parse(text, { want: family, allowHostBits: true });
    return leases.find((l) => subnetOf(l)?.equals(net));
  }
  const ip = IP.parse(text, family);
  const publicOf = (l: Lease) => (family === 6 ? l.attrs.publicIPv6 : l.attrs.publicIP);
  return leases.find((l) => publicOf(l) === ip.toString()) ?? leases.find((l) => subnetOf(l)?.contains(ip));
}

/** True when `spec` can name a peer (see findPeerLease). */
export function isPeerSpec(spec: string): boolean {
  try {
    findPeerLease(spec, []);
    return true;
  } catch {
    return false;
  }
}

/** The peer's pod gateway: its subnet's first address + 1. Throws if that is not inside the peer's subnet and the network. */
export function podGateway(peer: Lease, config: NetworkConfig, family: 4 | 6 = 4): string {
  const subnet = family === 6 ? peer.ipv6Subnet : carriesIPv4(peer) ? peer.subnet : undefined;
  const network = family === 6 ? config.ipv6Network : config.network;
  if (!subnet) throw new Error(`refusing to probe ${leaseLabel(peer)} over IPv${family}: it holds no IPv${family} subnet`);
  const gw = subnet.ip.add(1);
  if (!subnet.contains(gw) || !network?.contains(gw)) {
    throw new Error(`refusing to probe ${gw.toString()}: it is not inside ${subnet.toString()} and ${network?.toString() ?? 'the network'}`);
  }
  return gw.toString();
}

/** The peer's subnet and underlay address in the family probed. */
function peerIn(peer: Lease, family: 4 | 6): { readonly subnet: string; readonly publicIP: string } {
  return family === 6
    ? { subnet: peer.ipv6Subnet?.toString() ?? '?', publicIP: peer.attrs.publicIPv6 ?? '?' }
    : { subnet: peer.subnet.toString(), publicIP: peer.attrs.publicIP };
}

interface Expectation {
  readonly kind: Encapsulation['kind'];
  readonly description: string;
  readonly vni?: number;
  readonly ports: FramePorts;
  /** What carries it between the nodes, for the advice. */
  readonly transport: string;
}

function expectation(s: ProbeSetup): Expectation {
  const type = s.path?.type ?? s.backend;
  const plain = (why: string): Expectation => ({ kind: 'plain', description: `plain IP (${why})`, ports: DEFAULT_FRAME_PORTS, transport: 'plain IP between the nodes' });
  if (type === 'vxlan') {
    const v = vxlanSettings(s.config.backend.type === 'vxlan' ? s.config.backend : { type: 'vxlan', settings: {} });
    const ports = { ...DEFAULT_FRAME_PORTS, vxlan: [...new Set([v.port, ...DEFAULT_FRAME_PORTS.vxlan])] };
    if (s.family === 6 ? s.path?.plainV6 : s.path?.plain) return { ...plain('vxlan DirectRouting, peer reached directly'), ports };
    return { kind: 'vxlan', vni: v.vni, description: `VXLAN VNI ${v.vni} to UDP port ${v.port}`, ports, transport: `UDP port ${v.port}` };
  }
  if (type === 'ipip') {
    if (s.path?.plain) return plain('ipip DirectRouting, peer reached directly');
    return { kind: 'ipip', description: 'IP proto 4 (IPIP)', ports: DEFAULT_FRAME_PORTS, transport: 'IP protocol 4' };
  }
  if (type === 'udp') {
    const port = udpPortOrDefault(s.config);
    return { kind: 'udp', description: `UDP ${port}`, ports: { ...DEFAULT_FRAME_PORTS, udp: port }, transport: `UDP port ${port}` };
  }
  return { kind: 'plain', description: 'plain IP', ports: DEFAULT_FRAME_PORTS, transport: 'plain IP to the pod subnets (no NAT between nodes)' };
}

/** The udp backend's port as the config sets it (a Port migration moves it off 8285). */
function udpPortOrDefault(config: NetworkConfig): number {
  try {
    return config.backend.type === 'udp' ? intSetting(config.backend, 'Port', { min: 1, max: 65535, fallback: DEFAULT_FRAME_PORTS.udp }) : DEFAULT_FRAME_PORTS.udp;
  } catch {
    return DEFAULT_FRAME_PORTS.udp; // a bad setting is reported with the config
  }
}

export async function probePeer(s: ProbeSetup, out: Findings): Promise<ProbeReport> {
  const family = s.family ?? 4;
  const target = podGateway(s.peer, s.config, family);
  const expect = expectation(s);
  const durationMs = s.durationMs ?? 2000;
  const peer = peerIn(s.peer, family);
  const peerText = `${peer.subnet} (${peer.publicIP})`;

  let capture: PacketCapture | undefined;
  let captureError: string | undefined;
  try {
    capture = PacketCapture.open(s.ext.name, `host ${peer.publicIP} or net ${peer.subnet}`, expect.ports);
  } catch (err) {
    captureError = err instanceof CaptureError ? err.message : String(err);
  }
  const [ping] = await Promise.all([runPing(target, durationMs), new Promise((r) => setTimeout(r, durationMs))]);
  const frames = capture ? await capture.stop() : [];

  const leaving = (f: CapturedFrame) => (s.extMac ? f.eth.srcMac === s.extMac : f.outer.src === (family === 6 ? s.own.attrs.publicIPv6 : s.ext.ipv4));
  const requests = frames.filter((f) => leaving(f) && f.packet?.dst === target && f.packet.icmp?.type === ECHO_REQUEST);
  const replies = frames.filter((f) => !leaving(f) && f.packet?.src === target && f.packet.icmp?.type === ECHO_REPLY);
  const errors = frames.filter((f) => !leaving(f) && f.packet?.icmp?.quotedDst === target);
  const report: ProbeReport = {
    target,
    peer,
    expected: expect.description,
    sent: ping.sent,
    received: ping.received,
    left: requests.map(describeFrame),
    returned: replies.map(describeFrame),
    icmpErrors: errors.map((f) => `${icmpName(f.packet!.icmp!)} from ${f.packet!.src}`),
    captureError,
  };

  if (ping.error) {
    out.fail(TOPIC, `ping ${target} (the pod gateway of peer ${peerText}) could not send: ${ping.error}`,
      `check \`ip route get ${target}\` on this node; ${TWILLD_REPAIRS}`);
    return report;
  }
  out.ok(TOPIC, `sent ${ping.sent} ICMP echo request(s) to ${target}, the pod gateway of peer ${peerText}, capturing ${s.ext.name} for ${durationMs / 1000} s`);
  if (captureError) {
    out.warn(TOPIC, `${captureError}; what left the node is unknown`, 'run twill diagnose as root on the node, with libpcap installed (apt-get install libpcap0.8)');
  } else {
    await judgeRequests(s, expect, target, peer, requests, out);
  }

  const answered = Math.max(ping.received, replies.length);
  if (answered > 0) {
    const how = replies.length > 0 ? ` as ${describeFrame(replies[0])}` : ` (not seen on ${s.ext.name})`;
    out.ok(TOPIC, `reply received: ${ping.received} of ${ping.sent} echo replies from ${target}${how}`);
  } else {
    const icmp = report.icmpErrors.length ? `; the network answered ${[...new Set(report.icmpErrors)].join(', ')}` : '';
    out.fail(TOPIC, `no reply from ${target} within ${durationMs / 1000} s (${ping.sent} request(s) sent)${icmp}`,
      `on ${peer.publicIP}: is twilld running, and does \`twill diagnose\` there pass? ${target} exists once a pod runs there (the CNI bridge holds it); ` +
      `firewalls between the nodes must pass ${expect.transport}`);
  }
  return report;
}

async function judgeRequests(s: ProbeSetup, expect: Expectation, target: string, peer: { subnet: string; publicIP: string }, requests: readonly CapturedFrame[], out: Findings): Promise<void> {
  if (requests.length === 0) {
    out.fail(TOPIC, `nothing for ${target} left ${s.ext.name}; the kernel routes it by ${await kernelRoute(s.nl, target)}`,
      `the peer's route is missing or wrong (see the peer entries above; \`ip route get ${target}\`); ${TWILLD_REPAIRS}`);
    return;
  }
  const first = requests[0];
  const what = `${requests.length} echo request(s) left ${s.ext.name} as ${describeFrame(first)}`;
  const e = first.encapsulation;
  if (e.kind !== expect.kind) {
    out.fail(TOPIC, `${what}, but backend ${s.backend} should send ${expect.description}; the kernel routes it by ${await kernelRoute(s.nl, target)}`,
      `the route to ${peer.subnet} does not lead into the ${s.backend} datapath (\`ip route get ${target}\`); ${TWILLD_REPAIRS}`);
    return;
  }
  if (e.kind === 'vxlan' && expect.vni !== undefined && e.vni !== expect.vni) {
    out.fail(TOPIC, `${what}, but the network uses VNI ${expect.vni}`, `the vxlan device is misconfigured: ${TWILLD_REPAIRS}`);
    return;
  }
  if (e.kind !== 'plain' && first.outer.dst !== peer.publicIP) {
    out.fail(TOPIC, `${what}, but the peer's lease says ${peer.publicIP}`,
      `this node holds a wrong ${e.kind === 'vxlan' ? 'FDB entry' : 'route'} for the peer: ${TWILLD_REPAIRS}`);
    return;
  }
  if (e.kind === 'plain') {
    // Unencapsulated, the frame must go to the peer's own MAC (its public IP's neighbour entry).
    const peerMac = (await s.nl.listNeighbors(s.ext.index, s.family ?? 4)).find((n) => n.ip === peer.publicIP)?.mac;
    if (peerMac && first.eth.dstMac !== peerMac) {
      out.fail(TOPIC, `${what}, but ${peer.publicIP} is at MAC ${peerMac}: the frames went to another next hop; the kernel routes it by ${await kernelRoute(s.nl, target)}`,
        `the route to ${peer.subnet} should be via ${peer.publicIP} dev ${s.ext.name}; ${TWILLD_REPAIRS}`);
      return;
    }
  }
  out.ok(TOPIC, what);
}

/** The main-table route the kernel picks for `target` (longest prefix, then lowest metric), as `ip route` prints it. */
async function kernelRoute(nl: Netlink, target: string): Promise<string> {
  const ip = IP.parse(target);
  let best: { route: RouteInfo; net: IPNet } | undefined;
  for (const route of await nl.listRoutes({ family: ip.family })) {
    const net = IPNet.parse(route.dst, { want: ip.family, allowHostBits: true });
    if (!net.contains(ip)) continue;
    if (!best || net.prefixLen > best.net.prefixLen || (net.prefixLen === best.net.prefixLen && (route.metric ?? 0) < (best.route.metric ?? 0))) {
      best = { route, net };
    }
  }
  if (!best) return '"no route" (it is unreachable)';
  const r = best.route;
  const dst = r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst;
  const type = r.type === 'unicast' ? '' : `${r.type} `;
  return `"${type}${dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''}${r.onlink ? ' onlink' : ''}"`;
}

interface PingOutcome {
  sent: number;
  received: number;
  /** Set when ping could not send (no route, no binary). */
  error?: string;
}

/** `ping -n -c 3 -i 0.5 -w <s> <target>`, with an argument array (no shell). */
function runPing(target: string, durationMs: number): Promise<PingOutcome> {
  const deadline = String(Math.max(1, Math.round(durationMs / 1000)));
  return new Promise((resolve) => {
    execFile('ping', ['-n', '-c', '3', '-i', '0.5', '-w', deadline, target], { timeout: durationMs + 5000 }, (err, stdout, stderr) => {
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(stdout);
      if (m) {
        resolve({ sent: Number(m[1]), received: Number(m[2]) });
        return;
      }
      const code = (err as NodeJS.ErrnoException | null)?.code;
      const error = code === 'ENOENT' ? 'the ping command is not installed (apt-get install iputils-ping)' : (stderr || stdout || String(err)).trim().split('\n')[0];
      resolve({ sent: 0, received: 0, error });
    });
  });
}
