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

/**
 * Addresses and MACs are written here as bytes and read out as one string:
 * every dump decodes thousands of them (one per peer's route, FDB and
 * neighbour entry), and building each by concatenation allocated a string
 * per piece. Sized for the longest link-layer address (MAX_ADDR_LEN, 32).
 */
const MAX_ADDR_LEN = 32;
const TEXT = Buffer.alloc(3 * MAX_ADDR_LEN);
const DOT = 0x2e;
const COLON = 0x3a;
const ZERO = 0x30;
const HEX_DIGIT = Buffer.from('0123456789abcdef', 'latin1');

/** 4 or 16 bytes → address text; IPv6 in the RFC 5952 form `ip` prints (except IPv4-mapped ones, kept in hex). */
export function decodeIp(bytes: Buffer): string {
  return ipAt(bytes, 0, bytes.length);
}

/** `decodeIp` of the `length` bytes at `start` in `data`, read in place. */
export function ipAt(data: Buffer, start: number, length: number): string {
  if (length === 4) {
    let n = 0;
    for (let i = 0; i < 4; i++) {
      if (i > 0) TEXT[n++] = DOT;
      const b = data[start + i];
      if (b >= 100) TEXT[n++] = ZERO + Math.floor(b / 100);
      if (b >= 10) TEXT[n++] = ZERO + (Math.floor(b / 10) % 10);
      TEXT[n++] = ZERO + (b % 10);
    }
    return TEXT.toString('latin1', 0, n);
  }
  if (length !== 16) throw new InvalidArgumentError('address bytes', data.subarray(start, start + length).toString('hex'), '4 or 16 bytes long');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(data.readUInt16BE(start + i));
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


/** 6 bytes → 'aa:bb:cc:dd:ee:ff' (lower case, as `ip` prints). */
export function decodeMac(bytes: Buffer): string {
  return macAt(bytes, 0, bytes.length);
}

/** `decodeMac` of the `length` bytes at `start` in `data`, read in place. */
export function macAt(data: Buffer, start: number, length: number): string {
  if (length === 0) return '';
  if (length > MAX_ADDR_LEN) throw new InvalidArgumentError('link-layer address', `${length} bytes`, `at most ${MAX_ADDR_LEN}`);
  let n = 0;
  for (let i = 0; i < length; i++) {
    if (i > 0) TEXT[n++] = COLON;
    const b = data[start + i];
    TEXT[n++] = HEX_DIGIT[b >> 4];
    TEXT[n++] = HEX_DIGIT[b & 15];
  }
  return TEXT.toString('latin1', 0, n);
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

/** Decoders use at most this many attribute types. */
const MAX_ATTRIBUTE_TYPES = 8;
/**
 * Where the attributes the last `readAttributes` asked for lie in its
 * message: the i-th of its `types` at [spanStarts[i], spanStarts[i] +
 * spanLengths[i]), length -1 where absent. Each call overwrites them, so a
 * decoder reads every value it needs (`ipAttribute`, …) before returning,
 * and nothing is sliced or allocated per attribute.
 */
const spanStarts = new Int32Array(MAX_ATTRIBUTE_TYPES);
const spanLengths = new Int32Array(MAX_ATTRIBUTE_TYPES);

/**
 * Finds the attributes `types` after a message's fixed header
 * (`headerLength` bytes), the last of a type winning, checking every
 * attribute's length; read them with `ipAttribute` and the others, passing
 * the same `data`. Read straight from the bytes: the `netlink` package's
 * parsers build an object for every attribute of every message, and a repair
 * at 5000 peers decodes ~15000 messages (bench/README.md, "Bundled daemon",
 * "Repairs that find nothing changed" and "After a burst").
 */
export function readAttributes(data: Buffer, headerLength: number, what: string, types: readonly number[]): void {
  if (types.length > MAX_ATTRIBUTE_TYPES) throw new RangeError(`a ${what} decoder asks for ${types.length} attribute types; readAttributes holds at most ${MAX_ATTRIBUTE_TYPES}`);
  if (data.length < headerLength) throw new InvalidArgumentError(`${what} message`, `${data.length} bytes`, `at least its ${headerLength}-byte header`);
  spanLengths.fill(-1, 0, types.length);
  for (let at = headerLength; at + 4 <= data.length; ) {
    const len = hostU16(data, at);
    if (len < 4 || at + len > data.length) throw new InvalidArgumentError(`${what} attribute at byte ${at}`, `${len} bytes`, `within the message's ${data.length}`);
    const i = types.indexOf(hostU16(data, at + 2) & NLA_TYPE_MASK);
    if (i >= 0) {
      spanStarts[i] = at + 4;
      spanLengths[i] = len - 4;
    }
    at += (len + 3) & ~3;
  }
}

/** The i-th attribute of the last `readAttributes` of `data` as an address, or undefined when absent. */
export function ipAttribute(data: Buffer, i: number): string | undefined {
  return spanLengths[i] < 0 ? undefined : ipAt(data, spanStarts[i], spanLengths[i]);
}

/** … as a MAC when it is 6 bytes long, else undefined. */
export function macAttribute(data: Buffer, i: number): string | undefined {
  return spanLengths[i] === 6 ? macAt(data, spanStarts[i], 6) : undefined;
}

/** … as a host-order u32 when it is 4 bytes long, else undefined. */
export function u32Attribute(data: Buffer, i: number): number | undefined {
  return spanLengths[i] === 4 ? hostU32(data, spanStarts[i]) : undefined;
}

/** … as a network-order u16 when it is 2 bytes long, else undefined. */
export function u16beAttribute(data: Buffer, i: number): number | undefined {
  return spanLengths[i] === 2 ? data.readUInt16BE(spanStarts[i]) : undefined;
}
