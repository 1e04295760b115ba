/**
 * Bad input from every direction twilld takes it from — the network config,
 * other nodes' leases, its flags and environment, the subnet.env a previous
 * run left — each refused (or, for subnet.env, set aside) with one line that
 * names what is wrong: the field, flag, variable or file, and the bad value.
 *
 * One table per family; every row is `{ input, expect }` and becomes one
 * test. Besides what a row asks for, every message must be a single line of
 * at most MAX_MESSAGE characters, however large the bad value was.
 */
import { expect } from 'chai';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ConfigError, parseNetworkConfig, type NetworkConfig } from '../../lib/config';
import { KNOWN_BACKEND_TYPES, backendFactory, checkIPv6Backends } from '../../backends';
import {
  LeaseFormatError,
  MAX_LEASE_VALUE_BYTES,
  decodeLeaseAttrs,
  leaseFromRaw,
  parseSubnetKey,
  readPreviousSubnets,
} from '../../lib/subnet';
import { UsageError, parseDaemonFlags } from '../../cmd/flags';

/** Longest acceptable message: one readable log line. */
const MAX_MESSAGE = 300;

/**
 * What a refusal must say. `names` is the field, flag, variable or file at
 * fault; `says` are further parts of the message, such as the bad value.
 */
interface Expectation {
  readonly names: string;
  readonly says: readonly string[];
}

interface Row<I> {
  readonly name: string;
  readonly input: I;
  readonly expect: Expectation;
  /** A known fault in a module outside this suite's reach: the row is reported as pending, with this reason. */
  readonly pending?: string;
}

/** One test per row; a row with a known fault is listed as pending instead. */
function eachRow<I>(rows: readonly Row<I>[], title: (row: Row<I>) => string, check: (row: Row<I>) => void | Promise<void>): void {
  for (const row of rows) {
    if (row.pending) it(`${title(row)} (pending: ${row.pending})`);
    else it(title(row), () => check(row));
  }
}

function expectClearMessage(message: string, e: Expectation): void {
  expect(message, 'names what is wrong').to.include(e.names);
  for (const part of e.says) expect(message).to.include(part);
  expect(message, 'is one line').to.not.include('\n');
  expect(message.length, `stays short: ${message.slice(0, 120)}...`).to.be.at.most(MAX_MESSAGE);
}

/** Runs `fn`, expecting it to throw; returns what it threw. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error, but nothing was thrown');
}

/** A long string, for values far larger than any real one. */
const HUGE = 'x'.repeat(100_000);

// ---------------------------------------------------------------------------
// Network configs
// ---------------------------------------------------------------------------

/** What twilld does with the text at <prefix>/config: parse it, then let the backend check its own keys. */
function loadConfig(text: string): NetworkConfig {
  const config = parseNetworkConfig(text, KNOWN_BACKEND_TYPES);
  backendFactory(config.backend.type).validate(config.backend);
  checkIPv6Backends(config);
  return config;
}

const NET = '10.244.0.0/16';
/** A good config with the given Backend. */
const withBackend = (backend: object) => ({ Network: NET, Backend: backend });
const VXLAN = withBackend({ Type: 'vxlan' });

type ConfigInput = string | object;
const textOf = (input: ConfigInput): string => (typeof input === 'string' ? input : JSON.stringify(input));

const configRows: Row<ConfigInput>[] = [
  // JSON syntax
  { name: 'a trailing comma', input: '{"Network":"10.244.0.0/16",}', expect: { names: 'config', says: ['not valid JSON', 'position 27'] } },
  { name: 'single quotes', input: "{'Network':'10.244.0.0/16'}", expect: { names: 'config', says: ['not valid JSON'] } },
  { name: 'a config cut short', input: '{"Network":"10.244.0.0/16","Backend":{"Type":"vx', expect: { names: 'config', says: ['not valid JSON'] } },
  { name: 'text that would forge a log line', input: 'x\nINFO network config found', expect: { names: 'config', says: ['not valid JSON', 'x\\u000aINFO'] } },
  { name: 'a number instead of an object', input: '42', expect: { names: 'config', says: ['42', 'not a JSON object'] } },
  { name: 'a huge string instead of an object', input: JSON.stringify(HUGE), expect: { names: 'config', says: ['"xxxx', 'not a JSON object'] } },

  // Wrong types
  { name: 'Network as a number', input: { Network: 10 }, expect: { names: 'Network', says: ['10 is not a string', '"10.244.0.0/16"'] } },
  { name: 'Network as a huge string', input: { Network: HUGE }, expect: { names: 'Network', says: ['"xxxx', 'not an IPv4 network'] } },
  { name: 'EnableIPv4 as the string "true"', input: { Network: NET, EnableIPv4: 'true' }, expect: { names: 'EnableIPv4', says: ['"true" is not a boolean', 'true or false'] } },
  { name: 'SubnetLen as a string', input: { Network: NET, SubnetLen: '24' }, expect: { names: 'SubnetLen', says: ['"24"', 'whole number'] } },
  { name: 'SubnetMin as an object', input: { Network: NET, SubnetMin: { ip: '10.244.1.0' } }, expect: { names: 'SubnetMin', says: ['{"ip":"10.244.1.0"}', 'not a string'] } },
  { name: 'Backend as a string', input: { Network: NET, Backend: 'vxlan' }, expect: { names: 'Backend', says: ['"vxlan" is not an object', '{"Type": "vxlan"}'] } },
  { name: 'Backend as a list', input: { Network: NET, Backend: ['vxlan'] }, expect: { names: 'Backend', says: ['["vxlan"] is not an object'] } },
  { name: 'Backend.Type as a number', input: withBackend({ Type: 7 }), expect: { names: 'Backend.Type', says: ['7 is not a string', 'known types'] } },

  // Ranges
  { name: 'Network with a prefix of 33', input: { Network: '10.244.0.0/33' }, expect: { names: 'Network', says: ['"10.244.0.0/33"', 'bad prefix length'] } },
  { name: 'Network with host bits', input: { Network: '10.244.3.0/16' }, expect: { names: 'Network', says: ['"10.244.3.0/16"', 'did you mean 10.244.0.0/16?'] } },
  { name: 'a /29 Network, too small', input: { Network: '10.0.0.0/29' }, expect: { names: 'Network', says: ['"10.0.0.0/29"', 'at most /28'] } },
  { name: 'SubnetLen 31', input: { Network: NET, SubnetLen: 31 }, expect: { names: 'SubnetLen', says: ['31 is too large', 'at most 30'] } },
  { name: 'SubnetLen 17 in a /16', input: { Network: NET, SubnetLen: 17 }, expect: { names: 'SubnetLen', says: ['17 is too small', 'at least 18'] } },
  { name: 'SubnetLen 1e300', input: { Network: NET, SubnetLen: 1e300 }, expect: { names: 'SubnetLen', says: ['1e+300 is too large'] } },
  { name: 'SubnetMin above SubnetMax', input: { Network: NET, SubnetMin: '10.244.20.0', SubnetMax: '10.244.10.0' }, expect: { names: 'SubnetMin', says: ['"10.244.20.0" is above SubnetMax 10.244.10.0', 'no subnet'] } },
  { name: 'SubnetMin outside Network', input: { Network: NET, SubnetMin: '10.10.1.0' }, expect: { names: 'SubnetMin', says: ['"10.10.1.0" is not inside Network 10.244.0.0/16'] } },
  { name: 'SubnetMax outside Network', input: { Network: NET, SubnetMax: '192.168.0.0' }, expect: { names: 'SubnetMax', says: ['"192.168.0.0" is not inside Network 10.244.0.0/16'] } },
  { name: 'SubnetMax off a subnet boundary', input: { Network: NET, SubnetMax: '10.244.9.9' }, expect: { names: 'SubnetMax', says: ['"10.244.9.9"', '/24 boundary', '"10.244.9.0"'] } },

  // Families
  { name: 'both families disabled', input: { Network: NET, EnableIPv4: false }, expect: { names: 'EnableIPv4', says: ['false', 'EnableIPv6', 'enable at least one'] } },
  { name: 'a misspelt Network, naming the key that was ignored', input: { Netwrok: NET }, expect: { names: 'Network', says: ['missing', 'unknown keys were ignored: "Netwrok"'] } },
  { name: 'IPv6 on without IPv6Network', input: { Network: NET, EnableIPv6: true }, expect: { names: 'IPv6Network', says: ['missing', 'EnableIPv6'] } },

  // Backend type
  { name: 'an unknown backend type, listing the known ones', input: withBackend({ Type: 'gre' }), expect: { names: 'Backend.Type', says: ['"gre" is not a known backend', 'known types: alloc, bgp, host-gw, ipip, udp, vxlan, wireguard'] } },
  { name: 'a Backend without Type', input: withBackend({ VNI: 1 }), expect: { names: 'Backend.Type', says: ['missing', 'known types: alloc, bgp, host-gw, ipip, udp, vxlan, wireguard'] } },
  { name: 'Backend.Type given twice in different case', input: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","TYPE":"host-gw"}}', expect: { names: 'Backend.Type', says: ['"Type"', '"TYPE"', 'given twice'] } },

  // wireguard keys
  { name: 'wireguard PSK too short', input: withBackend({ Type: 'wireguard', PSK: 'c2hvcnQ=' }), expect: { names: 'Backend.PSK', says: ['"c2hvcnQ="', 'not a base64 WireGuard key', 'wg genpsk'] } },
  { name: 'wireguard PSK as a number', input: withBackend({ Type: 'wireguard', PSK: 7 }), expect: { names: 'Backend.PSK', says: ['7 is not a string'] } },
  { name: 'wireguard ListenPort 0', input: withBackend({ Type: 'wireguard', ListenPort: 0 }), expect: { names: 'Backend.ListenPort', says: ['0 is out of range', 'between 1 and 65535'] } },
  { name: 'wireguard PersistentKeepaliveInterval -1', input: withBackend({ Type: 'wireguard', PersistentKeepaliveInterval: -1 }), expect: { names: 'Backend.PersistentKeepaliveInterval', says: ['-1 is out of range'] } },
  { name: 'wireguard Mode "tunnel"', input: withBackend({ Type: 'wireguard', Mode: 'tunnel' }), expect: { names: 'Backend.Mode', says: ['"tunnel" is not one of separate, auto, ipv4, ipv6'] } },
  { name: 'wireguard Mode "ipv6" without EnableIPv6', input: withBackend({ Type: 'wireguard', Mode: 'ipv6' }), expect: { names: 'Backend.Mode', says: ['Mode "ipv6" reaches peers over IPv6', 'EnableIPv6 is false'] } },
  { name: 'wireguard ListenPortV6 70000', input: withBackend({ Type: 'wireguard', ListenPortV6: 70000 }), expect: { names: 'Backend.ListenPortV6', says: ['70000 is out of range', 'between 1 and 65535'] } },
  { name: 'wireguard ListenPortV6 as a string', input: withBackend({ Type: 'wireguard', ListenPortV6: '51821' }), expect: { names: 'Backend.ListenPortV6', says: ['"51821" is not a whole number'] } },
  { name: 'wireguard ListenPortV6 equal to ListenPort in Mode separate', input: withBackend({ Type: 'wireguard', ListenPort: 51820, ListenPortV6: 51820 }), expect: { names: 'Backend.ListenPortV6', says: ['51820 is also the ListenPort', 'flannel-wg-v6', 'Mode "auto"'] } },

  // vxlan keys
  { name: 'VNI -1', input: withBackend({ Type: 'vxlan', VNI: -1 }), expect: { names: 'Backend.VNI', says: ['-1 is out of range', 'between 0 and 16777215'] } },
  { name: 'VNI 16777216, one above the 24-bit limit', input: withBackend({ Type: 'vxlan', VNI: 16777216 }), expect: { names: 'Backend.VNI', says: ['16777216 is out of range', '16777215'] } },
  { name: 'VNI as a string', input: withBackend({ Type: 'vxlan', vni: '1' }), expect: { names: 'Backend.VNI', says: ['"1" is not a whole number'] } },
  { name: 'VNI 1.5', input: withBackend({ Type: 'vxlan', VNI: 1.5 }), expect: { names: 'Backend.VNI', says: ['1.5 is not a whole number'] } },
  { name: 'VNI as a huge string', input: withBackend({ Type: 'vxlan', VNI: HUGE }), expect: { names: 'Backend.VNI', says: ['"xxxx', 'not a whole number'] } },
  { name: 'Port 65536', input: withBackend({ Type: 'vxlan', Port: 65536 }), expect: { names: 'Backend.Port', says: ['65536 is out of range', 'between 0 and 65535'] } },
  { name: 'Port -1', input: withBackend({ Type: 'vxlan', port: -1 }), expect: { names: 'Backend.Port', says: ['-1 is out of range'] } },
  { name: 'Port as a string', input: withBackend({ Type: 'vxlan', Port: '8472' }), expect: { names: 'Backend.Port', says: ['"8472" is not a whole number'] } },
  { name: 'MTU 100, below what IPv4 needs', input: withBackend({ Type: 'vxlan', MTU: 100 }), expect: { names: 'Backend.MTU', says: ['100 is out of range', 'between 576 and 65535', 'or 0 for the external MTU'] } },
  { name: 'MTU 70000', input: withBackend({ Type: 'vxlan', MTU: 70000 }), expect: { names: 'Backend.MTU', says: ['70000 is out of range'] } },
  { name: 'DirectRouting "yes"', input: withBackend({ Type: 'vxlan', DirectRouting: 'yes' }), expect: { names: 'Backend.DirectRouting', says: ['"yes" is not true or false'] } },
  { name: 'GBP 1', input: withBackend({ Type: 'vxlan', GBP: 1 }), expect: { names: 'Backend.GBP', says: ['1 is not true or false'] } },

  // ipip keys
  { name: 'udp Port 0', input: withBackend({ Type: 'udp', Port: 0 }), expect: { names: 'Backend.Port', says: ['0 is out of range', 'between 1 and 65535'] } },
  { name: 'udp Port as a string', input: withBackend({ Type: 'udp', Port: '8285' }), expect: { names: 'Backend.Port', says: ['"8285" is not a whole number'] } },
  { name: 'an ipip Mode that does not exist', input: withBackend({ Type: 'ipip', Mode: 'turbo' }), expect: { names: 'Backend.Mode', says: ['"turbo" is not one of auto, kernel, userspace'] } },
  { name: 'an ipip DirectRouting given as the string "false"', input: withBackend({ Type: 'ipip', DirectRouting: 'false' }), expect: { names: 'Backend.DirectRouting', says: ['"false" is not true or false'] } },
];

/** Configs that are good enough to run, with a warning for what is ignored. */
const warningRows: { name: string; input: ConfigInput; warns: string[] }[] = [
  { name: 'an unknown key', input: { ...VXLAN, Netwrok: '10.0.0.0/8' }, warns: ['unknown key "Netwrok" is ignored'] },
  { name: 'an unknown key with a value of any type', input: { ...VXLAN, Comment: { who: ['ops'], when: 2024 } }, warns: ['unknown key "Comment" is ignored'] },
  { name: 'IPv6 keys while IPv6 is off', input: { ...VXLAN, IPv6Network: 'fc00::/48' }, warns: ['IPv6Network is ignored because EnableIPv6 is false'] },
];

// ---------------------------------------------------------------------------
// Leases written by other nodes
// ---------------------------------------------------------------------------

const LEASE_CONFIG = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}', KNOWN_BACKEND_TYPES);
const DUAL_CONFIG = parseNetworkConfig(
  '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}', KNOWN_BACKEND_TYPES);
const GOOD_VALUE = '{"PublicIP":"198.18.0.7","PublicIPv6":null}';

/**
 * A lease value alone, a key alone, or a whole etcd entry checked against a
 * network config. `names` is the LeaseFormatError's `what` (the key, the
 * value or one of its fields); the watcher puts the key in front of every
 * message, so the message itself need only name the fault and the bad value.
 */
type LeaseInput = { value: string } | { key: string } | { entry: { key: string; value: string }; config?: NetworkConfig };

function readLease(input: LeaseInput): unknown {
  if ('value' in input) return decodeLeaseAttrs(input.value);
  if ('key' in input) return parseSubnetKey(input.key);
  return leaseFromRaw({ ...input.entry, modRevision: 5n, createRevision: 5n }, input.config ?? LEASE_CONFIG);
}

const oversized = `{"PublicIP":"198.18.0.7","Pad":"${'x'.repeat(MAX_LEASE_VALUE_BYTES)}"}`;

const leaseRows: Row<LeaseInput>[] = [
  // Values
  { name: 'a value that is not JSON', input: { value: 'PublicIP=198.18.0.7' }, expect: { names: 'value', says: ['lease value is not JSON'] } },
  { name: 'a value cut short', input: { value: '{"PublicIP":"198.18.0.7"' }, expect: { names: 'value', says: ['lease value is not JSON'] } },
  { name: 'a value that would forge a log line', input: { value: 'x\n2024-01-01T00:00:00.000Z INFO lease added' }, expect: { names: 'value', says: ['lease value is not JSON', 'x\\u000a2024'] } },
  { name: `a value over ${MAX_LEASE_VALUE_BYTES} bytes`, input: { value: oversized }, expect: { names: 'value', says: [`${Buffer.byteLength(oversized)} bytes`, `${MAX_LEASE_VALUE_BYTES} allowed`] } },
  { name: 'a list instead of an object', input: { value: '[{"PublicIP":"198.18.0.7"}]' }, expect: { names: 'value', says: ['not a JSON object'] } },
  { name: 'PublicIP as a number', input: { value: '{"PublicIP":3322019847}' }, expect: { names: 'PublicIP', says: ['PublicIP must be a string', 'number 3322019847'] } },
  { name: 'PublicIP as a list', input: { value: '{"PublicIP":["198.18.0.7"]}' }, expect: { names: 'PublicIP', says: ['PublicIP must be a string', 'a list'] } },
  { name: 'PublicIP that is not an address', input: { value: '{"PublicIP":"198.18.0.999"}' }, expect: { names: 'PublicIP', says: ['"198.18.0.999" is not an IPv4 address'] } },
  { name: 'PublicIP as a huge string', input: { value: `{"PublicIP":"${HUGE.slice(0, 60_000)}"}` }, expect: { names: 'PublicIP', says: ['"xxxx', 'is not an IPv4 address'] } },
  { name: 'PublicIPv6 that is not an address', input: { value: '{"PublicIP":"198.18.0.7","PublicIPv6":"fc00::g"}' }, expect: { names: 'PublicIPv6', says: ['"fc00::g" is not an IPv6 address'] } },
  { name: 'BackendType as an object', input: { value: '{"PublicIP":"198.18.0.7","BackendType":{"name":"vxlan"}}' }, expect: { names: 'BackendType', says: ['BackendType must be a string', 'object'] } },
  { name: 'BackendType that is not a name', input: { value: '{"PublicIP":"198.18.0.7","BackendType":"VXLAN!"}' }, expect: { names: 'BackendType', says: ['"VXLAN!" is not a backend name'] } },
  { name: 'TwillBackends as a string', input: { value: '{"PublicIP":"198.18.0.7","TwillBackends":"vxlan"}' }, expect: { names: 'TwillBackends', says: ['must be a list', 'string "vxlan"'] } },
  { name: 'a TwillBackends entry with huge data and no Type', input: { value: JSON.stringify({ PublicIP: '198.18.0.7', TwillBackends: [{ Data: HUGE.slice(0, 60_000) }] }) }, expect: { names: 'TwillBackends', says: ['{"Data":"xxxx', 'has no valid Type'] } },

  // Keys
  { name: 'a key without a length', input: { key: '10.244.3.0' }, expect: { names: 'key', says: ['"10.244.3.0"', 'not of the form a.b.c.d-len'] } },
  { name: 'a key with an octet of 300', input: { key: '10.244.300.0-24' }, expect: { names: 'key', says: ['"10.244.300.0-24"', 'not an IPv4 network'] } },
  { name: 'a key with host bits', input: { key: '10.244.3.5-24' }, expect: { names: 'key', says: ['"10.244.3.5-24"', 'did you mean 10.244.3.0/24?'] } },
  { name: 'a dual-stack key with a bad IPv6 part', input: { key: '10.244.3.0-24&fc00::3::-64' }, expect: { names: 'key', says: ['"10.244.3.0-24&fc00::3::-64"', 'not an IPv6 network'] } },
  { name: 'a huge key', input: { key: `10.244.3.0-24${HUGE}` }, expect: { names: 'key', says: ['"10.244.3.0-24xxx', '100013 characters', 'not of the form'] } },
  { name: 'a huge dual-stack key of colons', input: { key: `10.244.3.0-24&${':'.repeat(50_000)}-64` }, expect: { names: 'key', says: ['"10.244.3.0-24&::::', 'not an IPv6 network'] } },

  // Whole entries against the network config
  { name: 'a subnet outside the network', input: { entry: { key: '10.99.3.0-24', value: GOOD_VALUE } }, expect: { names: 'key', says: ['10.99.3.0/24 is outside the network 10.244.0.0/16'] } },
  { name: 'a subnet of the wrong length', input: { entry: { key: '10.244.3.0-25', value: GOOD_VALUE } }, expect: { names: 'key', says: ['10.244.3.0/25 is a /25', 'SubnetLen is 24'] } },
  { name: 'a subnet as large as the whole network', input: { entry: { key: '10.244.0.0-16', value: GOOD_VALUE } }, expect: { names: 'key', says: ['10.244.0.0/16 is a /16', 'SubnetLen is 24'] } },
  { name: 'a subnet that covers the network', input: { entry: { key: '10.0.0.0-8', value: GOOD_VALUE } }, expect: { names: 'key', says: ['10.0.0.0/8 is outside the network 10.244.0.0/16'] } },
  { name: 'an IPv6 subnet outside the IPv6 network', input: { entry: { key: '10.244.3.0-24&fd00:0:0:3::-64', value: GOOD_VALUE }, config: DUAL_CONFIG }, expect: { names: 'key', says: ['fd00:0:0:3::/64 is outside the IPv6 network fc00::/48'] } },
  { name: 'an IPv6 subnet of the wrong length', input: { entry: { key: '10.244.3.0-24&fc00:0:0:3::-80', value: GOOD_VALUE }, config: DUAL_CONFIG }, expect: { names: 'key', says: ['fc00:0:0:3::/80 is a /80', 'IPv6SubnetLen is 64'] } },
  { name: 'a good key with a bad value', input: { entry: { key: '10.244.3.0-24', value: '{"PublicIP":true}' } }, expect: { names: 'PublicIP', says: ['PublicIP must be a string', 'boolean true'] } },
];

// ---------------------------------------------------------------------------
// Flags and FLANNELD_* variables
// ---------------------------------------------------------------------------

type FlagsInput = { argv: string[]; env?: NodeJS.ProcessEnv };

const flagRows: Row<FlagsInput>[] = [
  { name: 'a renew margin that is not a number', input: { argv: ['--subnet-lease-renew-margin=soon'] }, expect: { names: '--subnet-lease-renew-margin', says: ['whole number', '"soon"'] } },
  { name: 'a renew margin with a unit, from the environment', input: { argv: [], env: { FLANNELD_SUBNET_LEASE_RENEW_MARGIN: '1h' } }, expect: { names: 'FLANNELD_SUBNET_LEASE_RENEW_MARGIN', says: ['whole number', '"1h"'] } },
  { name: 'a health port above 65535, from the environment', input: { argv: [], env: { FLANNELD_HEALTHZ_PORT: '99999' } }, expect: { names: 'FLANNELD_HEALTHZ_PORT', says: ['0..65535', '99999'] } },
  { name: 'a negative health port', input: { argv: ['--healthz-port=-1'] }, expect: { names: '--healthz-port', says: ['0..65535', '-1'] } },
  { name: 'a boolean flag given "yes"', input: { argv: ['--ip-masq', 'yes'] }, expect: { names: '--ip-masq', says: ['true or false', '"yes"'] } },
  { name: 'a boolean variable given "enabled"', input: { argv: [], env: { FLANNELD_IPTABLES_FORWARD_RULES: 'enabled' } }, expect: { names: 'FLANNELD_IPTABLES_FORWARD_RULES', says: ['true or false', '"enabled"'] } },
  { name: 'a resync period of zero', input: { argv: ['--iptables-resync=0'] }, expect: { names: '--iptables-resync', says: ['positive', 'not 0'] } },
  { name: 'a resync period of zero, from the environment', input: { argv: [], env: { FLANNELD_IPTABLES_RESYNC: '0' } }, expect: { names: 'FLANNELD_IPTABLES_RESYNC', says: ['positive', 'not 0'] } },
  { name: 'a negative repair interval, from the environment', input: { argv: [], env: { FLANNELD_REPAIR_INTERVAL: '-3' } }, expect: { names: 'FLANNELD_REPAIR_INTERVAL', says: ['positive', '-3'] } },
  { name: 'a fractional lease TTL', input: { argv: ['--subnet-lease-ttl', '1.5'] }, expect: { names: '--subnet-lease-ttl', says: ['whole number', '"1.5"'] } },
  { name: 'an etcd prefix without its leading slash, from the environment', input: { argv: [], env: { FLANNELD_ETCD_PREFIX: 'coreos.com/network' } }, expect: { names: 'FLANNELD_ETCD_PREFIX', says: ['start with "/"', '"coreos.com/network"'] } },
  { name: 'a log level that does not exist, from the environment', input: { argv: [], env: { FLANNELD_LOG_LEVEL: 'verbose' } }, expect: { names: 'FLANNELD_LOG_LEVEL', says: ['error, warn, info or debug', '"verbose"'] } },
  { name: 'a misspelt flag, suggesting the right one', input: { argv: ['--etcd-endpoint', 'http://127.0.0.1:2379'] }, expect: { names: '--etcd-endpoint', says: ['unknown option', '--etcd-endpoints'] } },
  { name: 'a flag without its value', input: { argv: ['--subnet-file'] }, expect: { names: '--subnet-file', says: ['argument missing'] } },
  {
    name: 'a stray argument',
    input: { argv: ['--iface', 'eth0', 'eth1'] },
    expect: { names: 'eth1', says: ['too many arguments'] },
  },
];

// ---------------------------------------------------------------------------
// The previous subnet.env
// ---------------------------------------------------------------------------

/**
 * What the previous run left at the subnet file's path. These are never
 * fatal: readPreviousSubnets warns once, naming the file (`names` stands for
 * its path, known only when the test runs), and twilld chooses a subnet afresh.
 */
type SubnetEnvInput = { text: string | Buffer } | { make: (file: string) => Promise<void> };

const subnetEnvRows: Row<SubnetEnvInput>[] = [
  { name: 'binary garbage', input: { text: Buffer.from([0x00, 0xff, 0xfe, 0x10, 0x0a, 0x80, 0x3d]) }, expect: { names: 'the file', says: ['no FLANNEL_SUBNET'] } },
  { name: 'a write torn before FLANNEL_SUBNET', input: { text: 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUB' }, expect: { names: 'the file', says: ['no FLANNEL_SUBNET'] } },
  { name: 'a FLANNEL_SUBNET that is a word', input: { text: 'FLANNEL_SUBNET=banana\n' }, expect: { names: 'the file', says: ['unreadable subnet "banana"'] } },
  { name: 'an empty FLANNEL_SUBNET', input: { text: 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=\n' }, expect: { names: 'the file', says: ['unreadable subnet ""'] } },
  { name: 'a FLANNEL_SUBNET with a prefix of 40', input: { text: 'FLANNEL_SUBNET=10.244.3.1/40\n' }, expect: { names: 'the file', says: ['"10.244.3.1/40"'] } },
  { name: 'a huge FLANNEL_SUBNET', input: { text: `FLANNEL_SUBNET=${HUGE}\n` }, expect: { names: 'the file', says: ['unreadable subnet "xxxx'] } },
  { name: 'a directory in place of the file', input: { make: (file) => fs.mkdir(file) }, expect: { names: 'the file', says: ['cannot read', 'EISDIR'] } },
  { name: 'a symbolic link that points at itself', input: { make: (file) => fs.symlink(file, file) }, expect: { names: 'the file', says: ['cannot read', 'ELOOP'] } },
];

// ---------------------------------------------------------------------------

describe('bad input: every refusal names what is wrong', () => {
  describe('network config', () => {
    eachRow(configRows, (row) => `refuses ${row.name}, naming ${row.expect.names}`, (row) => {
      const err = thrownBy(() => loadConfig(textOf(row.input)));
      expect(err).to.be.instanceOf(ConfigError);
      const configError = err as ConfigError;
      expect(configError.field).to.equal(row.expect.names);
      expect(configError.message.startsWith(`${row.expect.names}: `), configError.message).to.equal(true);
      expectClearMessage(configError.message, row.expect);
    });

    for (const row of warningRows) {
      it(`accepts ${row.name}, with a warning rather than an error`, () => {
        const config = loadConfig(textOf(row.input));
        expect(config.network?.toString()).to.equal(NET);
        expect(config.warnings).to.include.members(row.warns);
      });
    }

    it('still accepts the edges of every range: VNI 0 and 16777215, Port 0 and 65535, MTU 0 and 576', () => {
      for (const backend of [
        { Type: 'vxlan', VNI: 0, Port: 0, MTU: 0 },
        { Type: 'vxlan', VNI: 16777215, Port: 65535, MTU: 576 },
        { Type: 'vxlan', VNI: 16777215, Port: 65535, MTU: 65535 },
      ]) {
        expect(() => loadConfig(JSON.stringify(withBackend(backend))), JSON.stringify(backend)).to.not.throw();
      }
    });
  });

  describe("another node's lease", () => {
    eachRow(leaseRows, (row) => `refuses ${row.name}, naming ${row.expect.names}`, (row) => {
      const err = thrownBy(() => readLease(row.input));
      expect(err).to.be.instanceOf(LeaseFormatError);
      expect((err as LeaseFormatError).what).to.equal(row.expect.names);
      expectClearMessage((err as Error).message, { names: '', says: row.expect.says });
    });
  });

  describe('flags and FLANNELD_* variables', () => {
    eachRow(flagRows, (row) => `refuses ${row.name}, naming ${row.expect.names}`, (row) => {
      const err = thrownBy(() => parseDaemonFlags(row.input.argv, row.input.env ?? {}, 'test'));
      expect(err).to.be.instanceOf(UsageError);
      // commander puts its "(Did you mean …?)" hint on a line of its own; twilld prints both.
      expectClearMessage((err as Error).message.replace(/\n/g, ' '), row.expect);
    });
  });

  describe('the previous subnet.env', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'twill-bad-input-'));
    });
    afterEach(async () => {
      await fs.rm(dir, { recursive: true, force: true });
    });

    eachRow(subnetEnvRows, (row) => `sets aside ${row.name} with one warning naming the file, and chooses afresh`, async (row) => {
      const file = path.join(dir, 'subnet.env');
      if ('text' in row.input) await fs.writeFile(file, row.input.text);
      else await row.input.make(file);
      const warnings: string[] = [];
      const previous = await readPreviousSubnets(file, (m) => warnings.push(m));
      expect(previous.subnet, 'no previous subnet').to.equal(undefined);
      expect(previous.ipv6Subnet, 'no previous IPv6 subnet').to.equal(undefined);
      expect(warnings).to.have.length(1);
      expectClearMessage(warnings[0], { names: file, says: row.expect.says });
    });
  });
});
