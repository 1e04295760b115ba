/**
 * The BIRD 2 configuration of the bgp backend, made from what twill knows
 * (pure: no I/O).
 *
 * Calico's model: this node announces its own pod subnet to every peer and
 * BIRD's kernel protocol installs the pod subnets the peers announce. What
 * the generated file holds and why:
 * - `twill_own` (static) carries this node's subnet as a blackhole route;
 *   it exists only to be announced, so the kernel export filter (BGP routes
 *   only) keeps it out of the kernel, where the node's bridge owns the subnet.
 * - `twill_kernel` exports BGP routes with a metric (`kernelMetric`) above
 *   the 0 of twill's own routes, so during a migration from or to another
 *   backend the route twill installs for the same subnet wins. Its graceful
 *   restart defers the kernel's resync while a restarted BIRD (`bird -R`)
 *   waits for its peers, so learned routes survive a BIRD restart.
 * - one `protocol bgp` per peer from the `twill_peer` template: import only
 *   subnets inside the pod network (never the network itself, never this
 *   node's subnet or a part of it; from a mesh peer, only its own lease's
 *   subnet), export only `twill_own`, next hop self.
 *   Sessions are `direct` (the peer is on a link of this node), which for
 *   iBGP also makes the gateway of learned routes the peer itself.
 *
 * Failure semantics: `birdConfig` throws BirdConfigError, naming the field
 * and the value, for input BIRD would refuse or misread (a password with a
 * quote, a subnet outside the network, two peers with one name, …); a
 * config it returns parses with `bird -p`.
 */
import { IP, IPNet } from '../../lib/ip';

export interface BirdPeer {
  /** BIRD protocol name, [a-z0-9_] only: `peerProtocolName`. */
  readonly name: string;
  readonly ip: string;
  readonly asn: number;
  /** TCP MD5 (RFC 2385) password. */
  readonly password?: string;
  /**
   * The one prefix this peer may announce (a mesh peer: its lease's subnet),
   * so a node cannot draw another node's traffic by announcing its subnet;
   * absent for a route reflector or router, which relays everyone's.
   */
  readonly only?: string;
}

export interface BirdConfigInput {
  readonly routerId: string;
  readonly asn: number;
  /** This node's pod subnet, announced: 10.244.1.0/24. */
  readonly ownSubnet: string;
  /** The pod network; only subnets inside it are accepted: 10.244.0.0/16. */
  readonly network: string;
  readonly peers: readonly BirdPeer[];
  readonly gracefulRestart: boolean;
  /** Metric of the routes BIRD installs; above twill's 0 so twill's own routes win. */
  readonly kernelMetric: number;
  /** BGP hold time in seconds (3–65535); BIRD's default (240) when absent. */
  readonly holdTime?: number;
}

export class BirdConfigError extends Error {
  constructor(readonly field: string, readonly value: unknown, what: string) {
    super(`bgp: ${field} ${JSON.stringify(value)} ${what}`);
    this.name = 'BirdConfigError';
  }
}

/** The kernel protocol's name; its routes carry `proto bird` (12) in the kernel. */
export const KERNEL_PROTOCOL = 'twill_kernel';
/** The static protocol holding this node's announced subnet. */
export const OWN_PROTOCOL = 'twill_own';
/** How long a restarted BIRD waits for its peers before syncing the kernel (BIRD's default is 240 s). */
export const GRACEFUL_RESTART_WAIT_S = 60;

const MAX_ASN = 4294967295;
/** BIRD's symbols are at most 64 characters (SYM_MAX_LEN). */
const MAX_NAME = 64;

/** `mesh_198_18_0_2`: the protocol name of the session with `ip`. */
export function peerProtocolName(kind: 'mesh' | 'peer', ip: string): string {
  const addr = parseIPv4('peer ip', ip);
  return `${kind}_${addr.toString().replace(/\./g, '_')}`;
}

export function birdConfig(input: BirdConfigInput): string {
  const routerId = parseIPv4('routerId', input.routerId).toString();
  checkAsn('asn', input.asn);
  const network = parseNet('network', input.network);
  const own = parseNet('ownSubnet', input.ownSubnet);
  if (!network.covers(own) || own.prefixLen <= network.prefixLen) {
    throw new BirdConfigError('ownSubnet', input.ownSubnet, `is not a subnet inside the network ${network.toString()}`);
  }
  if (!Number.isInteger(input.kernelMetric) || input.kernelMetric < 1 || input.kernelMetric > 0xffffffff) {
    throw new BirdConfigError('kernelMetric', input.kernelMetric, 'is not an integer from 1 to 4294967295 (0 is the metric of twill\'s own routes, which must win)');
  }
  if (input.holdTime !== undefined && (!Number.isInteger(input.holdTime) || input.holdTime < 3 || input.holdTime > 65535)) {
    throw new BirdConfigError('holdTime', input.holdTime, 'is not a whole number of seconds from 3 to 65535');
  }
  const names = new Set<string>();
  const peers = input.peers.map((p) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(p.name) || p.name.length > MAX_NAME || p.name.startsWith('twill_')) {
      throw new BirdConfigError('peer name', p.name, `is not a BIRD protocol name (a-z, 0-9 and _, at most ${MAX_NAME}, not starting with a digit or twill_): use peerProtocolName`);
    }
    if (names.has(p.name)) throw new BirdConfigError('peer name', p.name, 'is given to two peers; each needs its own');
    names.add(p.name);
    const ip = parseIPv4(`peer ${p.name} ip`, p.ip).toString();
    checkAsn(`peer ${p.name} asn`, p.asn);
    if (p.password !== undefined) checkPassword(p.name, p.password);
    let only: string | undefined;
    if (p.only !== undefined) {
      const net = parseNet(`peer ${p.name} only`, p.only);
      if (!network.covers(net) || net.prefixLen <= network.prefixLen || net.overlaps(own)) {
        throw new BirdConfigError(`peer ${p.name} only`, p.only, `is not a subnet of the network ${network.toString()} apart from this node's ${own.toString()}`);
      }
      only = net.toString();
    }
    return { ...p, ip, only };
  });

  const lines: string[] = [
    '# Written by twilld (bgp backend); changes here are overwritten.',
    `router id ${routerId};`,
    `graceful restart wait ${GRACEFUL_RESTART_WAIT_S};`,
    '# Full dates, so `show protocols` says since when a session is down even after a day.',
    'timeformat protocol iso long;',
    '# stderr is the log file in the run directory; debug and trace stay out of it.',
    'log stderr { info, remote, warning, error, auth, fatal, bug };',
    '',
    '# Interfaces and their addresses, which the direct sessions need.',
    'protocol device {',
    '  scan time 10;',
    '}',
    '',
    `protocol kernel ${KERNEL_PROTOCOL} {`,
    '  ipv4 {',
    '    import none;',
    '    export where source = RTS_BGP;',
    '  };',
    `  metric ${input.kernelMetric};`,
    '  learn off;',
    '  persist off;',
    '  merge paths off;',
    '  graceful restart on;',
    '  scan time 10;',
    '}',
    '',
    `protocol static ${OWN_PROTOCOL} {`,
    '  ipv4;',
    `  route ${own.toString()} blackhole;`,
    '}',
    '',
    'filter twill_import {',
    `  if net ~ [ ${own.toString()}+ ] then reject;`,
    ...peers.filter((p) => p.only !== undefined).map((p) => `  if proto = "${p.name}" && net != ${p.only} then reject;`),
    `  if net ~ [ ${network.toString()}{${network.prefixLen + 1},32} ] then accept;`,
    '  reject;',
    '}',
    '',
    'filter twill_export {',
    `  if proto = "${OWN_PROTOCOL}" then accept;`,
    '  reject;',
    '}',
    '',
    'template bgp twill_peer {',
    `  local as ${input.asn};`,
    '  direct;',
    ...(input.gracefulRestart ? ['  graceful restart on;'] : ['  graceful restart off;']),
    ...(input.holdTime !== undefined ? [`  hold time ${input.holdTime};`] : []),
    // A new node's session (and so its route everywhere) within about a second of its lease, not after
    // BIRD's default 5 s. 1 s is BIRD's floor (it takes up to a quarter off at random); an incoming
    // connection is accepted at once, so the first of the two sides to connect wins.
    '  connect delay time 1;',
    '  connect retry time 5;',
    '  error wait time 5, 30;',
    '  ipv4 {',
    '    import filter twill_import;',
    '    export filter twill_export;',
    '    next hop self;',
    '  };',
    '}',
  ];
  for (const p of peers) {
    lines.push(
      '',
      `protocol bgp ${p.name} from twill_peer {`,
      `  neighbor ${p.ip} as ${p.asn};`,
      // The nodes share one AS: a router of another AS hands each node the others' subnets with
      // that AS in the path, which BGP would otherwise drop as a loop.
      ...(p.asn !== input.asn ? ['  allow local as;'] : []),
      ...(p.password !== undefined ? [`  password "${p.password}";`] : []),
      '}',
    );
  }
  return lines.join('\n') + '\n';
}

/**
 * The kernel metric a configuration made by `birdConfig` gives BIRD's
 * routes; with protocol `bird` it tells them from those of another BIRD on
 * the host. Undefined for a text `birdConfig` did not write.
 */
export function kernelMetricOf(config: string): number | undefined {
  const block = new RegExp(`^protocol kernel ${KERNEL_PROTOCOL} \\{\\n([\\s\\S]*?)^\\}`, 'm').exec(config);
  const m = block ? /^ {2}metric (\d+);$/m.exec(block[1]) : null;
  return m ? Number(m[1]) : undefined;
}

/**
 * The cluster ASN a configuration made by `birdConfig` runs with (its
 * template's `local as`): a restarted twilld that finds BIRD still running
 * adopts it with that ASN rather than the default, so no session resets.
 */
export function asnOf(config: string): number | undefined {
  const block = /^template bgp twill_peer \{\n([\s\S]*?)^\}/m.exec(config);
  const m = block ? /^ {2}local as (\d+);$/m.exec(block[1]) : null;
  return m ? Number(m[1]) : undefined;
}

function parseIPv4(field: string, text: string): IP {
  try {
    return IP.parse(text, 4);
  } catch {
    throw new BirdConfigError(field, text, 'is not an IPv4 address');
  }
}

function parseNet(field: string, text: string): IPNet {
  try {
    return IPNet.parse(text, { want: 4 });
  } catch {
    throw new BirdConfigError(field, text, 'is not an IPv4 network in CIDR form (a.b.c.d/n, no host bits)');
  }
}

function checkAsn(field: string, asn: number): void {
  if (!Number.isInteger(asn) || asn < 1 || asn > MAX_ASN) throw new BirdConfigError(field, asn, `is not an AS number from 1 to ${MAX_ASN}`);
}

/**
 * BIRD 2.0's lexer takes a string as everything between two double quotes,
 * with no escapes: a quote or a newline cannot be written at all, and a
 * backslash is kept as it is by 2.0 but may start an escape in later
 * versions, so the same password would mean two things. All three are
 * refused rather than silently changed.
 */
function checkPassword(peer: string, password: string): void {
  if (password.length === 0) throw new BirdConfigError(`peer ${peer} password`, '', 'is empty; leave it out for no password');
  if (password.length > 80) throw new BirdConfigError(`peer ${peer} password`, '(hidden)', 'is longer than 80 characters, the most TCP MD5 keys hold');
  if (/["\\\x00-\x1f\x7f]/.test(password)) {
    throw new BirdConfigError(`peer ${peer} password`, '(hidden)', 'holds a double quote, a backslash, a newline or another control character, which BIRD\'s configuration cannot carry unchanged: choose one without');
  }
}
