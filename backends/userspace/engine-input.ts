/**
 * What twilld tells the engine, checked before it is sent: the options of
 * an EngineSupervisor turned into the engine's config, and a peer table
 * flattened to the quadruples the control protocol carries. Bad input is a
 * TypeError naming the option, or an InvalidPeerError naming the entry.
 */
import { IP, IPNet } from '../../lib/ip';
import { InvalidPeerError } from './errors';
import type { EngineConfig } from './native-engine';
import type { EngineSupervisorOptions, PeerEntry } from './engine-supervisor';

/** flanneld's udp port. */
export const DEFAULT_UDP_PORT = 8285;

/** Checks the options and turns them into the engine's config. */
export function engineConfig(opts: EngineSupervisorOptions): EngineConfig {
  const bad = (field: string, value: unknown, expected: string) => new TypeError(`EngineSupervisor options.${field}: ${JSON.stringify(value)} is not ${expected}`);
  if (opts.mode !== 'udp' && opts.mode !== 'ipip') throw bad('mode', opts.mode, '"udp" or "ipip"');
  if (typeof opts.tunName !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(opts.tunName)) throw bad('tunName', opts.tunName, 'a device name of 1..15 letters, digits, "_", "-" or "."');
  try {
    IP.parse(opts.localIP, 4);
  } catch {
    throw bad('localIP', opts.localIP, 'an IPv4 address');
  }
  const port = opts.port ?? DEFAULT_UDP_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad('port', opts.port, 'a port 1..65535');
  if (!Number.isInteger(opts.mtu) || opts.mtu < 68 || opts.mtu > 65535) throw bad('mtu', opts.mtu, 'an MTU 68..65535');
  let gateway: string;
  try {
    gateway = IPNet.parse(opts.ownSubnet, { want: 4, allowHostBits: true }).ip.toString();
  } catch {
    throw bad('ownSubnet', opts.ownSubnet, 'an IPv4 network in CIDR form');
  }
  return {
    mode: opts.mode,
    tunName: opts.tunName,
    localIP: opts.localIP,
    port,
    mtu: opts.mtu,
    gateway,
    offload: opts.offload ?? true,
    outerTtl: opts.outerTtl ?? 64,
    sockbuf: opts.socketBuffer ?? 8 << 20,
  };
}

/** Validates peers and flattens them to [subnet, prefixLen, publicIP, port] quadruples. */
export function encodePeers(peers: readonly PeerEntry[], defaultPort: number): number[] {
  const out: number[] = [];
  peers.forEach((p, i) => {
    let subnet: IPNet;
    let ip: IP;
    try {
      subnet = IPNet.parse(p.subnet, { want: 4 });
    } catch {
      throw new InvalidPeerError(i, 'subnet', p.subnet, 'an IPv4 network in CIDR form with host bits clear');
    }
    try {
      ip = IP.parse(p.publicIP, 4);
    } catch {
      throw new InvalidPeerError(i, 'publicIP', p.publicIP, 'an IPv4 address');
    }
    const port = defaultPort === 0 ? 0 : (p.port ?? defaultPort);
    if (!Number.isInteger(port) || port < 0 || port > 65535 || (defaultPort !== 0 && port === 0)) {
      throw new InvalidPeerError(i, 'port', p.port, 'a port 1..65535');
    }
    out.push(Number(subnet.ip.value), subnet.prefixLen, Number(ip.value), port);
  });
  return out;
}
