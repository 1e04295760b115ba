/**
 * IPv4 / IPv6 addresses and CIDR networks.
 *
 * Parsing is delegated to `ip-address` (it knows every textual form); the
 * arithmetic is done on bigints so that one type serves both families.
 * Every parse failure throws `InvalidAddressError` naming the bad text.
 */
import { Address6 } from 'ip-address';

export type Family = 4 | 6;

export class InvalidAddressError extends Error {
  constructor(readonly text: string, readonly reason: string) {
    super(`${JSON.stringify(text)} is not ${reason}`);
    this.name = 'InvalidAddressError';
  }
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

function familyOf(text: string): Family {
  return text.includes(':') ? 6 : 4;
}

/** Four decimal octets without leading zeros, as ip-address and Go's netip accept them. */
const IPV4_TEXT = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/**
 * IPv4 text to its value, or undefined when it is not an IPv4 address.
 * Done here rather than by ip-address because every reconcile parses and
 * prints each peer's addresses: at 5000 peers ip-address's bigint and hex
 * round trips were ~50 ms of CPU and much of the garbage of every repair.
 */
function parseIPv4(text: string): bigint | undefined {
  const m = IPV4_TEXT.exec(text);
  if (!m) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return BigInt(value);
}

function formatIPv4(value: bigint): string {
  const v = Number(value);
  return `${Math.floor(v / 0x1000000)}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** An IP address: its family and its value as an unsigned integer. */
export class IP {
  /**
   * toString's result, kept: an IP never changes, and peers' addresses are
   * printed on every reconcile. An ES private field, so that two equal IPs
   * still compare deeply equal whether or not one was printed.
   */
  #text: string | undefined;

  private constructor(readonly family: Family, readonly value: bigint) {}

  static parse(text: string, want?: Family): IP {
    // A zone ("fe80::1%eth0") names a link, not an address; ip-address would
    // silently drop it, so it is refused here like a prefix length.
    if (typeof text !== 'string' || text.includes('/') || text.includes('%')) {
      throw new InvalidAddressError(String(text), want === 6 ? 'an IPv6 address' : want === 4 ? 'an IPv4 address' : 'an IP address');
    }
    const family = familyOf(text);
    if (want !== undefined && family !== want) {
      throw new InvalidAddressError(text, want === 6 ? 'an IPv6 address' : 'an IPv4 address');
    }
    if (family === 4) {
      const value = parseIPv4(text);
      if (value === undefined) throw new InvalidAddressError(text, 'an IPv4 address');
      return new IP(4, value);
    }
    if (!Address6.isValid(text)) throw new InvalidAddressError(text, 'an IPv6 address');
    return new IP(6, new Address6(text).bigInt());
  }

  static fromValue(family: Family, value: bigint): IP {
    const max = (1n << BigInt(BITS[family])) - 1n;
    if (value < 0n || value > max) throw new RangeError(`address value out of range for IPv${family}`);
    return new IP(family, value);
  }

  get bits(): number {
    return BITS[this.family];
  }

  add(n: bigint | number): IP {
    return IP.fromValue(this.family, this.value + BigInt(n));
  }

  equals(other: IP): boolean {
    return this.family === other.family && this.value === other.value;
  }

  /**
   * RFC 5952 text: IPv6 in lower case with the longest run of zero groups
   * compressed, and an IPv4-mapped address in its mixed form
   * ("::ffff:192.0.2.1", RFC 5952 §5), as Go's netip prints it.
   */
  toString(): string {
    if (this.#text !== undefined) return this.#text;
    if (this.family === 4) this.#text = formatIPv4(this.value);
    else if (this.value >> 32n === 0xffffn) this.#text = `::ffff:${formatIPv4(this.value & 0xffffffffn)}`;
    else this.#text = Address6.fromBigInt(this.value).correctForm();
    return this.#text;
  }
}

/** A network in CIDR form, always held with its host bits cleared. */
export class IPNet {
  private constructor(readonly ip: IP, readonly prefixLen: number) {}

  /**
   * Parses "a.b.c.d/n" (or IPv6). Host bits must be zero unless `allowHostBits`,
   * in which case they are cleared: a network written with host bits set is
   * almost always a typo, so the default is to say so.
   */
  static parse(text: string, opts: { want?: Family; allowHostBits?: boolean } = {}): IPNet {
    const what = opts.want === 6 ? 'an IPv6 network in CIDR form' : opts.want === 4 ? 'an IPv4 network in CIDR form' : 'a network in CIDR form';
    if (typeof text !== 'string') throw new InvalidAddressError(String(text), what);
    const slash = text.indexOf('/');
    if (slash < 0) throw new InvalidAddressError(text, `${what} (no /prefix length)`);
    let ip: IP;
    try {
      ip = IP.parse(text.slice(0, slash), opts.want);
    } catch {
      throw new InvalidAddressError(text, what);
    }
    const lenText = text.slice(slash + 1);
    const len = Number(lenText);
    if (!/^\d{1,3}$/.test(lenText) || len > ip.bits) throw new InvalidAddressError(text, `${what} (bad prefix length)`);
    const net = IPNet.of(ip, len);
    if (!opts.allowHostBits && net.ip.value !== ip.value) {
      throw new InvalidAddressError(text, `${what} with host bits clear (did you mean ${net.toString()}?)`);
    }
    return net;
  }

  static of(ip: IP, prefixLen: number): IPNet {
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > ip.bits) {
      throw new RangeError(`prefix length ${prefixLen} out of range for IPv${ip.family}`);
    }
    const hostBits = BigInt(ip.bits - prefixLen);
    const base = (ip.value >> hostBits) << hostBits;
    return new IPNet(IP.fromValue(ip.family, base), prefixLen);
  }

  get family(): Family {
    return this.ip.family;
  }

  /** Number of addresses in the network. */
  get size(): bigint {
    return 1n << BigInt(this.ip.bits - this.prefixLen);
  }

  get last(): IP {
    return IP.fromValue(this.family, this.ip.value + this.size - 1n);
  }

  contains(ip: IP): boolean {
    return ip.family === this.family && ip.value >= this.ip.value && ip.value <= this.last.value;
  }

  /** True when `other` lies wholly inside this network. */
  covers(other: IPNet): boolean {
    return other.family === this.family && other.prefixLen >= this.prefixLen && this.contains(other.ip);
  }

  overlaps(other: IPNet): boolean {
    return this.covers(other) || other.covers(this);
  }

  equals(other: IPNet): boolean {
    return this.prefixLen === other.prefixLen && this.ip.equals(other.ip);
  }

  /** The network of the same length `n` steps further on. */
  step(n: bigint | number): IPNet {
    return IPNet.of(this.ip.add(BigInt(n) * this.size), this.prefixLen);
  }

  toString(): string {
    return `${this.ip.toString()}/${this.prefixLen}`;
  }
}
