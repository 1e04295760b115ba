/**
 * The one piece of address arithmetic the plugin needs: a CIDR's network
 * (host bits cleared), because subnet.env holds the node's first address
 * (`10.244.1.1/24`) and host-local refuses a range with host bits set.
 * Written here, without twill's `lib/ip` (which needs the `ip-address`
 * package), so that the plugin runs on a host from its own few files.
 */
import { isIPv4, isIPv6 } from 'net';

export interface Cidr {
  readonly family: 4 | 6;
  /** The network, host bits cleared, e.g. "10.244.1.0/24". */
  readonly network: string;
  /** The network's first address, where host-local puts the gateway, e.g. "10.244.1.1". */
  readonly firstHost: string;
}

/** Parses "addr/len"; returns undefined when it is not a CIDR. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) return undefined;
  const len = Number(m[2]);
  if (isIPv4(m[1]) && len <= 32) {
    const net = mask(m[1].split('.').map(Number), len);
    return { family: 4, network: `${net.join('.')}/${len}`, firstHost: plusOne(net).join('.') };
  }
  if (isIPv6(m[1]) && len <= 128) {
    const net = mask(parseV6(m[1]), len);
    return { family: 6, network: `${formatV6(net)}/${len}`, firstHost: formatV6(plusOne(net)) };
  }
  return undefined;
}

function mask(bytes: number[], len: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
}

function plusOne(bytes: number[]): number[] {
  const out = [...bytes];
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = (out[i] + 1) & 0xff;
    if (out[i] !== 0) break;
  }
  return out;
}

/** 16 bytes of an address `isIPv6` accepted (with `::` and an IPv4 tail). */
function parseV6(text: string): number[] {
  const addr = text.split('%')[0];
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const [a, b, c, d] = g.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const words = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** RFC 5952 text: lower-case, the longest run of two or more zero groups as "::". */
function formatV6(bytes: number[]): string {
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > best.len && j - i >= 2) best = { at: i, len: j - i };
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}
