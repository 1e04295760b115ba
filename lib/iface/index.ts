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
 * IPv6 addresses select too (flanneld matches --iface-regex and
 * --iface-can-reach against IPv4 only, its issue #2081): `--iface-regex`
 * matching an interface's IPv6 address selects it (and publishes that
 * address), `--iface-can-reach` takes an IPv6 address and follows the IPv6
 * routes. In an IPv6-only network (EnableIPv4 false) the interface needs a
 * global IPv6 address rather than an IPv4 one, the default route is the
 * IPv6 one (::/0), the interface holding `--public-ipv6` is chosen before
 * it, and the published PublicIP is flanneld's "0.0.0.0".
 *
 * It reads the kernel's view through `/sys/class/net`, `/proc/net/route`,
 * `/proc/net/ipv6_route` and Node's interface list — no command is run.
 */
import { readFileSync } from 'fs';
import * as os from 'os';
import { IP } from '../ip';
import { NO_PUBLIC_IP } from '../subnet/lease';

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
  /** The network carries IPv4 (EnableIPv4, the default): an IPv4 address to publish is needed. False: IPv6 only. */
  readonly wantIPv4?: boolean;
}

/** What the selection reads from the system; replaceable in unit tests. */
export interface SystemView {
  interfaces(): { name: string; ipv4: string[]; ipv6: string[] }[];
  linkInfo(name: string): { index: number; mtu: number } | undefined;
  routes(): SystemRoute[];
  /** The IPv6 routes (`/proc/net/ipv6_route`); absent: none. */
  routes6?(): SystemRoute[];
}

export interface SystemRoute {
  readonly iface: string;
  readonly dst: bigint;
  /** Prefix length. */
  readonly mask: number;
  readonly metric: number;
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
  routes6() {
    let text: string;
    try {
      text = readFileSync('/proc/net/ipv6_route', 'utf8');
    } catch {
      return [];
    }
    // dst (32 hex, network order) dst-len (hex) src src-len next-hop metric (hex) refcnt use flags iface
    const RTF_REJECT = 0x0200; // unreachable and prohibit routes lead nowhere
    return text.split('\n').map((line) => line.trim().split(/\s+/)).filter((f) => f.length >= 10 && !(parseInt(f[8], 16) & RTF_REJECT))
      .map((f) => ({ iface: f[9], dst: BigInt(`0x${f[0]}`), mask: parseInt(f[1], 16), metric: parseInt(f[5], 16) }));
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
  const v6only = opts.wantIPv4 === false;
  const wantIPv6 = opts.wantIPv6 === true || v6only;
  // The family an interface must have an address of to be chosen.
  const needed = v6only ? 'a global IPv6 address' : 'an IPv4 address';
  const all = sys.interfaces();
  const usable = (i: { ipv4: string[]; ipv6: string[] }) => (v6only ? i.ipv6.length > 0 : i.ipv4.length > 0);
  const byName = (name: string) => all.find((i) => i.name === name);
  // By value, as flanneld compares them: "FD00::5" and "fd00:0:0:0:0:0:0:5" are one address.
  const sameAddress = (a: string, b: IP | undefined) => b !== undefined && parseOrUndefined(a)?.equals(b) === true;
  const byAddress = (text: string) => {
    const want = parseOrUndefined(text);
    return want && all.find((i) => [...i.ipv4, ...i.ipv6].some((a) => sameAddress(a, want)));
  };
  // `flag` is the option that led to this interface, named when it cannot be used;
  // `preferredIP` the address that selected it (published when it is of a published family).
  const finish = (name: string, why: string, preferredIP?: string, flag = '--iface'): InterfaceSelection => {
    let reason = why;
    const entry = byName(name);
    const link = sys.linkInfo(name);
    if (!entry || !link) throw new InterfaceSelectionError(flag, `interface ${name} has vanished`);
    const preferred = preferredIP === undefined ? undefined : parseOrUndefined(preferredIP);
    const ipv4 = entry.ipv4.find((a) => sameAddress(a, preferred)) ?? entry.ipv4[0];
    const ipv6 = entry.ipv6.find((a) => sameAddress(a, preferred)) ?? entry.ipv6[0];
    const iface: ExternalInterface = { name, index: link.index, mtu: link.mtu, ipv4, ipv6 };
    const publicIP = v6only ? NO_PUBLIC_IP : opts.publicIP ?? ipv4;
    // flanneld publishes no IPv4 address in an IPv6-only network, whatever --public-ip says.
    if (v6only && opts.publicIP !== undefined) reason += `; --public-ip ${opts.publicIP} is ignored (EnableIPv4 is false)`;
    if (!publicIP) throw new InterfaceSelectionError(flag, `interface ${name} has no IPv4 address; give --public-ip or choose another interface`);
    if (!wantIPv6) return { iface, publicIP, reason };
    const v6 = opts.publicIPv6 ?? ipv6;
    if (!v6) {
      throw new InterfaceSelectionError('--public-ipv6',
        `${v6only ? 'the network is IPv6-only (EnableIPv4 false)' : 'EnableIPv6 is true'} but interface ${name} has no global IPv6 address to publish; ` +
        `give --public-ipv6 or add one to ${name}`);
    }
    // In the form flanneld writes it (Go's net.IP String, RFC 5952), so the lease is byte-identical.
    return { iface, publicIP, publicIPv6: IP.parse(v6, 6).toString(), reason };
  };

  if (opts.iface && opts.iface.length > 0) {
    for (const want of opts.iface) {
      const isIP = /^[\d.]+$/.test(want) || want.includes(':');
      const found = isIP ? byAddress(want) : byName(want);
      if (found && usable(found)) return finish(found.name, `--iface ${want}`, isIP ? want : undefined);
    }
    throw new InterfaceSelectionError('--iface', `none of --iface ${opts.iface.join(', ')} names an interface with ${needed}`);
  }
  if (opts.ifaceRegex && opts.ifaceRegex.length > 0) {
    for (const pattern of opts.ifaceRegex) {
      let re: RegExp;
      try {
        re = new RegExp(pattern);
      } catch {
        throw new InterfaceSelectionError('--iface-regex', `--iface-regex ${JSON.stringify(pattern)} is not a valid regular expression`);
      }
      // Addresses of the family that selects first, then those of the other.
      for (const family of v6only ? ['ipv6', 'ipv4'] as const : ['ipv4', 'ipv6'] as const) {
        for (const i of all) {
          if (!usable(i)) continue;
          const ip = i[family].find((a) => re.test(a));
          if (ip) return finish(i.name, `--iface-regex ${pattern} matched ${ip}`, ip, '--iface-regex');
        }
      }
      const named = all.find((i) => re.test(i.name) && usable(i));
      if (named) return finish(named.name, `--iface-regex ${pattern} matched ${named.name}`, undefined, '--iface-regex');
    }
    throw new InterfaceSelectionError('--iface-regex', `no address or name of an interface with ${needed} matches --iface-regex ${opts.ifaceRegex.join(', ')}`);
  }
  if (opts.ifaceCanReach) {
    const target = parseOrUndefined(opts.ifaceCanReach);
    if (!target) {
      throw new InterfaceSelectionError('--iface-can-reach', `--iface-can-reach ${JSON.stringify(opts.ifaceCanReach)} is not an IPv4 or IPv6 address`);
    }
    const name = routeInterface(target.family === 6 ? sys.routes6?.() ?? [] : sys.routes(), target.value, target.bits);
    if (!name) throw new InterfaceSelectionError('--iface-can-reach', `no route reaches ${opts.ifaceCanReach}`);
    return finish(name, `the route to ${opts.ifaceCanReach} leaves by ${name}`, undefined, '--iface-can-reach');
  }
  const publicAddress = v6only ? opts.publicIPv6 : opts.publicIP;
  if (publicAddress) {
    const holder = byAddress(publicAddress);
    if (holder && usable(holder)) return finish(holder.name, `it holds ${v6only ? '--public-ipv6' : '--public-ip'} ${publicAddress}`, publicAddress);
  }
  const dflt = v6only ? routeInterface(sys.routes6?.() ?? [], 0n, 128, true) : routeInterface(sys.routes(), 0n, 32, true);
  if (!dflt) throw new InterfaceSelectionError('--iface', `there is no ${v6only ? 'IPv6 ' : ''}default route to pick an interface from; give --iface`);
  return finish(dflt, `it carries the ${v6only ? 'IPv6 ' : ''}default route`);
}

function parseOrUndefined(text: string): IP | undefined {
  try {
    return IP.parse(text);
  } catch {
    return undefined;
  }
}

function routeInterface(routes: readonly SystemRoute[], target: bigint, bits: number, defaultOnly = false): string | undefined {
  let best: SystemRoute | undefined;
  const all = (1n << BigInt(bits)) - 1n;
  for (const r of routes) {
    if (defaultOnly && r.mask !== 0) continue;
    const maskValue = r.mask === 0 ? 0n : all ^ ((1n << BigInt(bits - r.mask)) - 1n);
    if ((target & maskValue) !== r.dst) continue;
    if (!best || r.mask > best.mask || (r.mask === best.mask && r.metric < best.metric)) best = r;
  }
  return best?.iface;
}
