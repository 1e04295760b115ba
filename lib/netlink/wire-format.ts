/**
 * Conversions between the plain values of this layer's API (addresses as
 * '10.244.1.0' / 'fc00::1', MACs as 'aa:bb:cc:dd:ee:ff', CIDRs as
 * '10.244.1.0/24') and the byte strings netlink carries.
 *
 * Everything here is pure. Bad input throws `InvalidArgumentError` naming the
 * field, before anything is sent to the kernel.
 */
import { endianness } from 'os';
import { isIPv4, isIPv6 } from 'net';
import { AttrStream, StreamData } from './package';
import { InvalidArgumentError } from './errors';

/** Address families as the kernel numbers them. */
export const AF_INET = 2;
export const AF_INET6 = 10;
/** FDB entries are neighbours of this family. */
export const AF_BRIDGE = 7;

export type IpFamily = 4 | 6;

export function addressFamily(family: IpFamily): number {
  return family === 4 ? AF_INET : AF_INET6;
}

export function ipFamilyOf(addressFamilyNumber: number): IpFamily | undefined {
  return addressFamilyNumber === AF_INET ? 4 : addressFamilyNumber === AF_INET6 ? 6 : undefined;
}

/** The family of an IP address text, or an `InvalidArgumentError` naming `field`. */
export function ipFamily(ip: string, field = 'address'): IpFamily {
  if (typeof ip === 'string') {
    if (isIPv4(ip)) return 4;
    if (isIPv6(ip) && !ip.includes('%')) return 6;
  }
  throw new InvalidArgumentError(field, ip, 'an IPv4 or IPv6 address');
}

/** '10.244.1.0' → 4 bytes, 'fc00::1' → 16 bytes (network order). */
export function encodeIp(ip: string, field = 'address'): Buffer {
  return ipFamily(ip, field) === 4 ? Buffer.from(ip.split('.').map(Number)) : encodeIpv6(ip);
}

function encodeIpv6(ip: string): Buffer {
  const out = Buffer.alloc(16);
  let text = ip;
  // A trailing dotted quad ("::ffff:198.18.0.1") stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) >= 0) {
    const v4 = Buffer.from(text.slice(lastColon + 1).split('.').map(Number));
    text = `${text.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  headGroups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  tailGroups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 16 - (tailGroups.length - i) * 2));
  return out;
}

/** 4 or 16 bytes → address text; IPv6 in the RFC 5952 form `ip` prints (except IPv4-mapped ones, kept in hex). */
export function decodeIp(bytes: Buffer): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new InvalidArgumentError('address bytes', bytes.toString('hex'), '4 or 16 bytes long');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  // The longest run of two or more zero groups (the first on a tie) becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) { bestStart = i; bestLength = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** 'aa:bb:cc:dd:ee:ff' → 6 bytes. */
export function encodeMac(mac: string, field = 'mac'): Buffer {
  if (typeof mac !== 'string' || !MAC_PATTERN.test(mac)) {
    throw new InvalidArgumentError(field, mac, 'a MAC address like "aa:bb:cc:dd:ee:ff"');
  }
  return Buffer.from(mac.split(':').map((b) => parseInt(b, 16)));
}

/** Two lower-case hex digits per byte value: every dump decodes thousands of MACs (one per peer's FDB and neighbour entry). */
const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** 6 bytes → 'aa:bb:cc:dd:ee:ff' (lower case, as `ip` prints). */
export function decodeMac(bytes: Buffer): string {
  let text = bytes.length ? HEX_BYTE[bytes[0]] : '';
  for (let i = 1; i < bytes.length; i++) text += `:${HEX_BYTE[bytes[i]]}`;
  return text;
}

/** A parsed 'address/prefix'. */
export interface Cidr {
  family: IpFamily;
  /** the address part as written (not masked): '10.244.1.1' in '10.244.1.1/24'. */
  ip: string;
  prefixLen: number;
}

/**
 * '10.244.1.0/24' → { family: 4, ip: '10.244.1.0', prefixLen: 24 }.
 * A bare address means a host prefix (/32 or /128); 'default' means 0.0.0.0/0.
 */
export function parseCidr(text: string, field = 'cidr'): Cidr {
  if (text === 'default') return { family: 4, ip: '0.0.0.0', prefixLen: 0 };
  if (typeof text !== 'string') throw new InvalidArgumentError(field, text, 'a CIDR like "10.244.1.0/24"');
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  let family: IpFamily;
  try {
    family = ipFamily(ip, field);
  } catch {
    throw new InvalidArgumentError(field, text, 'a CIDR like "10.244.1.0/24" or an address');
  }
  const max = family === 4 ? 32 : 128;
  if (slash < 0) return { family, ip, prefixLen: max };
  const lenText = text.slice(slash + 1);
  const prefixLen = Number(lenText);
  if (!/^\d{1,3}$/.test(lenText) || prefixLen > max) {
    throw new InvalidArgumentError(field, text, `a CIDR with a prefix length between 0 and ${max}`);
  }
  return { family, ip, prefixLen };
}

export function formatCidr(ip: string, prefixLen: number): string {
  return `${ip}/${prefixLen}`;
}

/**
 * Flattens a `netlink` attribute stream into one Buffer.
 *
 * The package's nested-attribute encoders (`ifla.formatInfo`,
 * `ifla.formatVxlan`, …) return a writer function, while the attributes that
 * carry them (`linkinfo`, `Info.data`) are typed as Buffer.
 */
export function flatten(data: StreamData): Buffer {
  const stream = new AttrStream();
  stream.emit(data);
  return Buffer.concat(stream.bufs);
}

/** Names of the true members of one of the package's flag objects (`{ permanent: true }` → ['permanent']). */
export function flagNames(flags: object | undefined): string[] {
  if (!flags) return [];
  return Object.entries(flags).filter(([name, on]) => name !== '__unknown' && on === true).map(([name]) => name);
}

// rtnetlink headers and attribute values are in host byte order.
const LITTLE_ENDIAN = endianness() === 'LE';
export const hostU16 = (b: Buffer, at: number): number => (LITTLE_ENDIAN ? b.readUInt16LE(at) : b.readUInt16BE(at));
export const hostU32 = (b: Buffer, at: number): number => (LITTLE_ENDIAN ? b.readUInt32LE(at) : b.readUInt32BE(at));
export const hostS32 = (b: Buffer, at: number): number => (LITTLE_ENDIAN ? b.readInt32LE(at) : b.readInt32BE(at));

/** The two top bits of nla_type are flags (nested, network byte order). */
const NLA_TYPE_MASK = 0x3fff;

/**
 * The attributes `types` after a message's fixed header (`headerLength`
 * bytes), as slices of `data` in the order of `types` (undefined where
 * absent), the last of a type winning; every attribute's length is checked.
 * Read straight from the bytes, and only the few a decoder uses sliced: the
 * `netlink` package's parsers build an object for every attribute of every
 * message, and a repair at 5000 peers decodes ~15000 messages
 * (bench/README.md, "Bundled daemon" and "Repairs that find nothing changed").
 */
export function rtAttributes(data: Buffer, headerLength: number, what: string, types: readonly number[]): (Buffer | undefined)[] {
  if (data.length < headerLength) throw new InvalidArgumentError(`${what} message`, `${data.length} bytes`, `at least its ${headerLength}-byte header`);
  const out = new Array<Buffer | undefined>(types.length).fill(undefined);
  for (let at = headerLength; at + 4 <= data.length; ) {
    const len = hostU16(data, at);
    if (len < 4 || at + len > data.length) throw new InvalidArgumentError(`${what} attribute at byte ${at}`, `${len} bytes`, `within the message's ${data.length}`);
    const i = types.indexOf(hostU16(data, at + 2) & NLA_TYPE_MASK);
    if (i >= 0) out[i] = data.subarray(at + 4, at + len);
    at += (len + 3) & ~3;
  }
  return out;
}

