/**
 * Choosing the external interface, in flanneld's order: each `--iface`
 * (a name or an address), then each `--iface-regex` (matched against
 * addresses, then names), then `--iface-can-reach` (the interface the
 * route to that address leaves by), then the interface holding
 * `--public-ip`, then the default-route interface.
 *
 * With IPv6 on (the network config's EnableIPv6), the node also publishes
 * an IPv6 address, as flanneld does: `--public-ipv6`, else the chosen
 * interface's first global IPv6 address; none is an error, since peers
 * could not reach this node's IPv6 subnet.
 *
 * It reads the kernel's view through `/sys/class/net`, `/proc/net/route`
 * and Node's interface list — no command is run.
 */
import { readFileSync } from 'fs';
import * as os from 'os';
import { IP } from '../ip';

export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** The interface's first IPv4 address. */
  readonly ipv4?: string;
  readonly ipv6?: string;
}

export interface InterfaceSelection {
  readonly iface: ExternalInterface;
  /** The address published in the lease: --public-ip, else the interface's. */
  readonly publicIP: string;
  /** The IPv6 address published in the lease (PublicIPv6), when `wantIPv6`: --public-ipv6, else the interface's. */
  readonly publicIPv6?: string;
  /** How it was chosen, for the log. */
  readonly reason: string;
}

export interface InterfaceOptions {
  readonly iface?: readonly string[];
  readonly ifaceRegex?: readonly string[];
  readonly ifaceCanReach?: string;
  readonly publicIP?: string;
  readonly publicIPv6?: string;
  /** The network carries IPv6 (EnableIPv6): an IPv6 address to publish is needed. */
  readonly wantIPv6?: boolean;
}

/** What the selection reads from the system; replaceable in unit tests. */
export interface SystemView {
  interfaces(): { name: string; ipv4: string[]; ipv6: string[] }[];
  linkInfo(name: string): { index: number; mtu: number } | undefined;
  routes(): { iface: string; dst: bigint; mask: number; metric: number }[];
}

export class InterfaceSelectionError extends Error {
  constructor(readonly flag: string, message: string) {
    super(message);
    this.name = 'InterfaceSelectionError';
  }
}

export const linuxSystem: SystemView = {
  interfaces() {
    return Object.entries(os.networkInterfaces()).map(([name, addrs]) => ({
      name,
      ipv4: (addrs ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address),
      // Global ones only, as flanneld takes (Go's IsGlobalUnicast): not link-local, not loopback.
      ipv6: (addrs ?? []).filter((a) => a.family === 'IPv6' && !/^fe[89ab]/i.test(a.address) && a.address !== '::1').map((a) => a.address),
    }));
  },
  linkInfo(name) {
    try {
      const index = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'));
      const mtu = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8'));
      return { index, mtu };
    } catch {
      return undefined;
    }
  },
  routes() {
    let text: string;
    try {
      text = readFileSync('/proc/net/route', 'utf8');
    } catch {
      return [];
    }
    return text.split('\n').slice(1).filter((l) => l.trim()).map((line) => {
      const f = line.trim().split(/\s+/);
      return { iface: f[0], dst: BigInt(leHexToValue(f[1])), mask: popcount(leHexToValue(f[7])), metric: Number(f[6]) };
    });
  },
};

// /proc/net/route prints addresses as host-order (little-endian) hex.
function leHexToValue(hex: string): number {
  const n = parseInt(hex, 16) >>> 0;
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}

function popcount(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v; v >>>= 1) c += v & 1;
  return c;
}

export function selectInterface(opts: InterfaceOptions, sys: SystemView = linuxSystem): InterfaceSelection {
  if (opts.publicIP !== undefined) {
    try {
      IP.parse(opts.publicIP, 4);
    } catch {
      throw new InterfaceSelectionError('--public-ip', `--public-ip ${JSON.stringify(opts.publicIP)} is not an IPv4 address`);
    }
  }
  if (opts.publicIPv6 !== undefined) {
    try {
      IP.parse(opts.publicIPv6, 6);
    } catch {
      throw new InterfaceSelectionError('--public-ipv6', `--public-ipv6 ${JSON.stringify(opts.publicIPv6)} is not an IPv6 address`);
    }
  }
  const all = sys.interfaces();
  const byName = (name: string) => all.find((i) => i.name === name);
  // By value, as flanneld compares them: "FD00::5" and "fd00:0:0:0:0:0:0:5" are one address.
  const byAddress = (text: string) => {
    const want = parseOrUndefined(text);
    return want && all.find((i) => [...i.ipv4, ...i.ipv6].some((a) => parseOrUndefined(a)?.equals(want)));
  };
  // `flag` is the option that led to this interface, named when it cannot be used.
  const finish = (name: string, reason: string, preferredIP?: string, flag = '--iface'): InterfaceSelection => {
    const entry = byName(name);
    const link = sys.linkInfo(name);
    if (!entry || !link) throw new InterfaceSelectionError(flag, `interface ${name} has vanished`);
    const ipv4 = preferredIP && entry.ipv4.includes(preferredIP) ? preferredIP : entry.ipv4[0];
    const iface: ExternalInterface = { name, index: link.index, mtu: link.mtu, ipv4, ipv6: entry.ipv6[0] };
    const publicIP = opts.publicIP ?? ipv4;
    if (!publicIP) throw new InterfaceSelectionError(flag, `interface ${name} has no IPv4 address; give --public-ip or choose another interface`);
    if (!opts.wantIPv6) return { iface, publicIP, reason };
    const v6 = opts.publicIPv6 ?? iface.ipv6;
    if (!v6) {
      throw new InterfaceSelectionError('--public-ipv6',
        `EnableIPv6 is true but interface ${name} has no global IPv6 address to publish; give --public-ipv6 or add one to ${name}`);
    }
    // In the form flanneld writes it (Go's net.IP String, RFC 5952), so the lease is byte-identical.
    return { iface, publicIP, publicIPv6: IP.parse(v6, 6).toString(), reason };
  };

  if (opts.iface && opts.iface.length > 0) {
    for (const want of opts.iface) {
      const isIP = /^[\d.]+$/.test(want) || want.includes(':');
      const found = isIP ? byAddress(want) : byName(want);
      if (found && found.ipv4.length > 0) return finish(found.name, `--iface ${want}`, isIP ? want : undefined);
    }
    throw new InterfaceSelectionError('--iface', `none of --iface ${opts.iface.join(', ')} names an interface with an IPv4 address`);
  }
  if (opts.ifaceRegex && opts.ifaceRegex.length > 0) {
    for (const pattern of opts.ifaceRegex) {
      let re: RegExp;
      try {
        re = new RegExp(pattern);
      } catch {
        throw new InterfaceSelectionError('--iface-regex', `--iface-regex ${JSON.stringify(pattern)} is not a valid regular expression`);
      }
      for (const i of all) {
        const ip = i.ipv4.find((a) => re.test(a));
        if (ip) return finish(i.name, `--iface-regex ${pattern} matched ${ip}`, ip);
      }
      const named = all.find((i) => re.test(i.name) && i.ipv4.length > 0);
      if (named) return finish(named.name, `--iface-regex ${pattern} matched ${named.name}`);
    }
    throw new InterfaceSelectionError('--iface-regex', `no interface address or name matches --iface-regex ${opts.ifaceRegex.join(', ')}`);
  }
  if (opts.ifaceCanReach) {
    let target: IP;
    try {
      target = IP.parse(opts.ifaceCanReach, 4);
    } catch {
      throw new InterfaceSelectionError('--iface-can-reach', `--iface-can-reach ${JSON.stringify(opts.ifaceCanReach)} is not an IPv4 address`);
    }
    const name = routeInterface(sys, target.value);
    if (!name) throw new InterfaceSelectionError('--iface-can-reach', `no route reaches ${opts.ifaceCanReach}`);
    return finish(name, `the route to ${opts.ifaceCanReach} leaves by ${name}`, undefined, '--iface-can-reach');
  }
  if (opts.publicIP) {
    const holder = byAddress(opts.publicIP);
    if (holder) return finish(holder.name, `it holds --public-ip ${opts.publicIP}`, opts.publicIP);
  }
  const dflt = routeInterface(sys, 0n, true);
  if (!dflt) throw new InterfaceSelectionError('--iface', 'there is no default route to pick an interface from; give --iface');
  return finish(dflt, 'it carries the default route');
}

function parseOrUndefined(text: string): IP | undefined {
  try {
    return IP.parse(text);
  } catch {
    return undefined;
  }
}

function routeInterface(sys: SystemView, target: bigint, defaultOnly = false): string | undefined {
  let best: { iface: string; mask: number; metric: number } | undefined;
  for (const r of sys.routes()) {
    if (defaultOnly && r.mask !== 0) continue;
    const maskValue = r.mask === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - r.mask)) - 1n);
    if ((target & maskValue) !== r.dst) continue;
    if (!best || r.mask > best.mask || (r.mask === best.mask && r.metric < best.metric)) best = r;
  }
  return best?.iface;
}
