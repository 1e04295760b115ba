/**
 * The bgp backend's keys in the network config (flanneld has no such
 * backend; the names follow twill's others):
 * - `ASN` — this cluster's AS number, 1..4294967294 (default 64512, the
 *   first private one; 23456, AS_TRANS, is refused);
 * - `Mesh` — peer with every other node whose lease terminates bgp
 *   (default true, so `{"Type": "bgp"}` alone works on one segment);
 * - `Peers` — `[{"IP": "198.18.0.253", "ASN": 65000, "Password": "..."}]`:
 *   route reflectors or top-of-rack routers; each node peers with those on
 *   its own link (an eBGP session needs its neighbour on a connected
 *   network). `ASN` defaults to the cluster's (an iBGP route reflector);
 * - `Password` — TCP-MD5 for every session (a peer's own `Password` wins);
 * - `GracefulRestart` — default true: peers keep this node's routes while
 *   its BIRD restarts, and its kernel keeps theirs;
 * - `HoldTime` — seconds, 3..65535 (BIRD's default, 240, when absent).
 */
import { BackendConfig, ConfigError, setting } from '../../lib/config';
import { boolSetting, intSetting } from '../settings';

export const DEFAULT_ASN = 64512;
const MAX_ASN = 4294967294;
const AS_TRANS = 23456;

export interface ListedPeer {
  readonly ip: string;
  readonly asn: number;
  readonly password?: string;
}

export interface BgpSettings {
  readonly asn: number;
  readonly mesh: boolean;
  readonly peers: readonly ListedPeer[];
  readonly password?: string;
  readonly gracefulRestart: boolean;
  readonly holdTime?: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function bgpSettings(config: BackendConfig): BgpSettings {
  const asn = asnValue(setting(config.settings, 'ASN'), 'Backend.ASN', DEFAULT_ASN);
  const mesh = boolSetting(config, 'Mesh', true);
  const gracefulRestart = boolSetting(config, 'GracefulRestart', true);
  const password = passwordValue(setting(config.settings, 'Password'), 'Backend.Password');
  const raw = setting(config.settings, 'HoldTime');
  const holdTime = raw === undefined || raw === null ? undefined : intSetting(config, 'HoldTime', { min: 3, max: 65535, fallback: 0 });
  const peers = listedPeers(setting(config.settings, 'Peers'), asn);
  if (!mesh && peers.length === 0) {
    throw new ConfigError('Backend.Peers', 'Backend.Peers: with "Mesh": false the nodes need at least one entry in Peers (a route reflector or router, e.g. [{"IP": "198.18.0.253", "ASN": 65000}]); otherwise no node learns any route');
  }
  return { asn, mesh, peers, gracefulRestart, ...(password !== undefined ? { password } : {}), ...(holdTime !== undefined ? { holdTime } : {}) };
}

function listedPeers(v: unknown, clusterAsn: number): ListedPeer[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ConfigError('Backend.Peers', `Backend.Peers: ${show(v)} is not a list; write e.g. [{"IP": "198.18.0.253", "ASN": 65000}]`);
  const seen = new Set<string>();
  return v.map((entry: unknown, i) => {
    const field = `Backend.Peers[${i}]`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new ConfigError(field, `${field}: ${show(entry)} is not an object like {"IP": "198.18.0.253", "ASN": 65000}`);
    const obj = entry as Record<string, unknown>;
    const ip = setting(obj, 'IP');
    if (typeof ip !== 'string' || !IPV4.test(ip)) {
      throw new ConfigError(`${field}.IP`, `${field}.IP: ${show(ip)} is not an IPv4 address; twill's BGP sessions run over IPv4 (e.g. "198.18.0.253")`);
    }
    const first = Number(ip.split('.')[0]);
    if (ip === '0.0.0.0' || first === 127 || first >= 224) throw new ConfigError(`${field}.IP`, `${field}.IP: ${ip} cannot be a BGP neighbour (unspecified, loopback, multicast or reserved)`);
    if (seen.has(ip)) throw new ConfigError(`${field}.IP`, `${field}.IP: ${ip} is listed twice`);
    seen.add(ip);
    const asn = asnValue(setting(obj, 'ASN'), `${field}.ASN`, clusterAsn);
    const password = passwordValue(setting(obj, 'Password'), `${field}.Password`);
    return { ip, asn, ...(password !== undefined ? { password } : {}) };
  });
}

function asnValue(v: unknown, field: string, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_ASN) {
    throw new ConfigError(field, `${field}: ${show(v)} is not an AS number; it must be a whole number from 1 to ${MAX_ASN} (private: 64512–65534, 4200000000–4294967294)`);
  }
  if (v === AS_TRANS) throw new ConfigError(field, `${field}: ${AS_TRANS} is AS_TRANS, reserved for 4-byte AS transition (RFC 6793); pick another`);
  return v;
}

function passwordValue(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(field, `${field}: ${show(v)} is not a string`);
  // TCP-MD5 keys are at most 80 bytes (TCP_MD5SIG_MAXKEYLEN); BIRD's config takes printable text.
  if (Buffer.byteLength(v) > 80) throw new ConfigError(field, `${field}: it is ${Buffer.byteLength(v)} bytes long; TCP-MD5 allows at most 80`);
  if (/[\x00-\x1f\x7f]/.test(v)) throw new ConfigError(field, `${field}: it holds a control character (a newline?); use printable characters only`);
  // BIRD 2's config strings have no escapes: a quote would end the password early.
  if (/["\\]/.test(v)) throw new ConfigError(field, `${field}: it holds a double quote or a backslash, which BIRD's configuration cannot carry; use other characters`);
  return v;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
