/**
 * Interface addresses (`ip addr`). The overlay devices carry one address,
 * `<subnet>/32` for flannel.1, flannel.ipip and flannel0.
 *
 * Failure: `NetlinkError` — EADDRNOTAVAIL when `deleteAddress` finds no
 * such address, ENODEV when the link is missing.
 */
import { AttrStream, FlagsNew, rt } from './package';
import { LinkRef, RtContext } from './context';
import { Describe } from './socket';
import { addressFamily, decodeIp, encodeIp, formatCidr, IpFamily, ipFamilyOf, parseCidr } from './wire-format';

export interface AddressInfo {
  family: IpFamily;
  /** '10.244.1.0' */
  address: string;
  prefixLen: number;
  /** '10.244.1.0/32' */
  cidr: string;
  ifindex: number;
  /** Link name; filled by `listAddresses`, absent in events. */
  dev?: string;
  /** 0 global, 253 link, 254 host. */
  scope: number;
}

/** Decodes an RTM_NEWADDR message; undefined for families other than IPv4/IPv6. */
export function decodeAddress(msg: rt.AddressMessage): AddressInfo | undefined {
  const family = ipFamilyOf(msg.data.family ?? 0);
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
  const bytes = msg.attrs.local ?? msg.attrs.address;
  if (!family || !bytes) return undefined;
  const address = decodeIp(bytes);
  const prefixLen = msg.data.prefixlen ?? 0;
  return { family, address, prefixLen, cidr: formatCidr(address, prefixLen), ifindex: msg.data.index ?? 0, scope: msg.data.scope ?? 0 };
}

export async function listAddresses(ctx: RtContext, ref: LinkRef, family?: IpFamily): Promise<AddressInfo[]> {
  const describe = { operation: 'list addresses', object: `dev ${ref}` };
  const index = await ctx.ifindex(ref, describe);
  const out = new AttrStream();
  rt.formatAddressMessage({ kind: 'address', data: { family: family ? addressFamily(family) : 0, index }, attrs: {} }, out);
  const replies = await ctx.reader.dump(rt.MessageType.GETADDR, out.bufs, describe);
  const dev = typeof ref === 'string' ? ref : (await ctx.linkNames()).get(index);
  const result: AddressInfo[] = [];
  for (const m of replies) {
    if (m.kind !== 'address' || m.data.index !== index) continue;
    const info = decodeAddress(m);
    if (info && (!family || info.family === family)) result.push({ ...info, dev });
  }
  return result;
}

/** Adds `cidr` to the link, or updates it if present (no error either way). */
export function replaceAddress(ctx: RtContext, ref: LinkRef, cidr: string): Promise<void> {
  return changeAddress(ctx, ref, cidr, rt.MessageType.NEWADDR, FlagsNew.CREATE | FlagsNew.REPLACE, 'replace address');
}

/** Removes `cidr` from the link; EADDRNOTAVAIL if absent. */
export function deleteAddress(ctx: RtContext, ref: LinkRef, cidr: string): Promise<void> {
  return changeAddress(ctx, ref, cidr, rt.MessageType.DELADDR, 0, 'delete address');
}

async function changeAddress(
  ctx: RtContext,
  ref: LinkRef,
  cidr: string,
  type: rt.MessageType,
  flags: number,
  operation: string,
): Promise<void> {
  const { family, ip, prefixLen } = parseCidr(cidr, 'cidr');
  const describe: Describe = { operation, object: `${cidr} dev ${ref}` };
  const index = await ctx.ifindex(ref, describe);
  const bytes = encodeIp(ip);
  const out = new AttrStream();
  rt.formatAddressMessage({
    kind: 'address',
    data: { family: addressFamily(family), prefixlen: prefixLen, index },
    attrs: { local: bytes, address: bytes },
  }, out);
  await ctx.writer.request(type, out.bufs, flags, describe);
}
