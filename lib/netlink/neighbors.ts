/**
 * ARP (IPv4) and NDP (IPv6) neighbour entries (`ip neigh`). flannel's vxlan
 * backend pins, per peer, `<peer subnet IP> lladdr <peer VtepMAC> nud
 * permanent` on flannel.1 so that the kernel never has to resolve the
 * gateways of its onlink routes.
 *
 * Failure: `NetlinkError` — ENOENT when `deleteNeighbor` finds nothing,
 * ENODEV for a missing link.
 */
import { AttrStream, FlagsNew, rt } from './package';
import { LinkRef, RtContext } from './context';
import { isNotFound } from './errors';
import { Describe } from './socket';
import { addressFamily, encodeIp, encodeMac, flagNames, hostS32, hostU16, IpFamily, ipAttribute, ipFamily, ipFamilyOf, macAttribute, readAttributes } from './wire-format';

/** A neighbour entry to install. */
export interface NeighborSpec {
  dev: LinkRef;
  ip: string;
  mac: string;
  /** NUD_PERMANENT (default) — never expires, never re-resolved; else NUD_REACHABLE. */
  permanent?: boolean;
}

export interface NeighborSelector {
  dev: LinkRef;
  ip: string;
}

export interface NeighborInfo {
  family: IpFamily;
  ip: string;
  /** Absent while unresolved (incomplete, failed). */
  mac?: string;
  ifindex: number;
  /** Link name; filled by `listNeighbors`, absent in events. */
  dev?: string;
  /** NUD states set: 'permanent', 'reachable', 'stale', 'incomplete', 'failed', 'noarp', … (shared between entries of one state) */
  state: readonly string[];
  permanent: boolean;
}

/** struct ndmsg: family u8, pad, ifindex s32 at 4, state u16 at 8, flags u8 at 10, type u8 at 11. */
export const NDMSG_LENGTH = 12;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
const NEIGHBOR_ATTRIBUTES = [NDA_DST, NDA_LLADDR];
/** Positions in NEIGHBOR_ATTRIBUTES. */
const [DST, LLADDR] = [0, 1];

/** A handful of NUD state combinations occur; each is named once, not once per entry of a dump. */
const stateNames = new Map<number, readonly string[]>();

/** The names of the NUD states set in `state` (ndm_state), as the package names them. */
export function neighborStateNames(state: number): readonly string[] {
  let names = stateNames.get(state);
  if (!names) {
    names = Object.freeze(flagNames(rt.parseNeighborState(state)));
    stateNames.set(state, names);
  }
  return names;
}

/** Decodes the body of an RTM_NEWNEIGH/DELNEIGH message (ARP/NDP); undefined for other families (FDB entries are family AF_BRIDGE). */
export function decodeNeighbor(data: Buffer): NeighborInfo | undefined {
  const family = ipFamilyOf(data[0]);
  if (!family) return undefined;
  readAttributes(data, NDMSG_LENGTH, 'neighbour', NEIGHBOR_ATTRIBUTES);
  const ip = ipAttribute(data, DST);
  if (ip === undefined) return undefined;
  const state = neighborStateNames(hostU16(data, 8));
  const info: NeighborInfo = { family, ip, ifindex: hostS32(data, 4), state, permanent: state.includes('permanent') };
  const mac = macAttribute(data, LLADDR);
  if (mac !== undefined) info.mac = mac;
  return info;
}

/** Entries of `family` (default IPv4), on `ref` if given. A missing link has no entries. */
export async function listNeighbors(ctx: RtContext, ref?: LinkRef, family: IpFamily = 4): Promise<NeighborInfo[]> {
  const describe: Describe = { operation: 'list neighbours', object: ref !== undefined ? `dev ${ref}` : '' };
  let ifindex: number | undefined;
  if (ref !== undefined) {
    try {
      ifindex = await ctx.ifindex(ref, describe);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data: { family: addressFamily(family), ifindex }, attrs: {} }, out);
  const decode = (type: number, data: Buffer) => (type === rt.MessageType.NEWNEIGH ? decodeNeighbor(data) : undefined);
  const [replies, names] = await Promise.all([ctx.reader.dumpDecoded(rt.MessageType.GETNEIGH, out.bufs, describe, decode), ctx.linkNames()]);
  const result: NeighborInfo[] = [];
  for (const n of replies) {
    if (n.family !== family || (ifindex !== undefined && n.ifindex !== ifindex)) continue;
    n.dev = names.get(n.ifindex);
    result.push(n);
  }
  return result;
}

/** Installs the entry, replacing any entry for the same IP on the link. */
export async function replaceNeighbor(ctx: RtContext, spec: NeighborSpec): Promise<void> {
  const permanent = spec.permanent ?? true;
  const describe: Describe = {
    operation: 'replace neighbour',
    object: `${spec.ip} lladdr ${spec.mac} dev ${spec.dev} nud ${permanent ? 'permanent' : 'reachable'}`,
  };
  const family = ipFamily(spec.ip, 'ip');
  const attrs: rt.NeighborAttrs = { dst: encodeIp(spec.ip, 'ip'), lladdr: encodeMac(spec.mac) };
  const data: rt.Neighbor = {
    family: addressFamily(family),
    ifindex: await ctx.ifindex(spec.dev, describe),
    state: permanent ? { permanent: true } : { reachable: true },
  };
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data, attrs }, out);
  await ctx.writer.request(rt.MessageType.NEWNEIGH, out.bufs, FlagsNew.CREATE | FlagsNew.REPLACE, describe);
}

/**
 * Asks the kernel to resolve `ip` on the link now, as if a packet were
 * waiting for it (RTM_NEWNEIGH with NTF_USE): an absent entry is created in
 * state INCOMPLETE and ARP/NDP starts; an existing one is only "used" (a
 * STALE entry gets re-probed). Nothing permanent is added: an entry that
 * never resolves becomes FAILED and the kernel garbage-collects it.
 */
export async function probeNeighbor(ctx: RtContext, sel: NeighborSelector): Promise<void> {
  const describe: Describe = { operation: 'probe neighbour', object: `${sel.ip} dev ${sel.dev} use` };
  const family = ipFamily(sel.ip, 'ip');
  const data: rt.Neighbor = { family: addressFamily(family), ifindex: await ctx.ifindex(sel.dev, describe), flags: { use: true } };
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data, attrs: { dst: encodeIp(sel.ip, 'ip') } }, out);
  await ctx.writer.request(rt.MessageType.NEWNEIGH, out.bufs, FlagsNew.CREATE, describe);
}

/** Removes the entry for `ip` on the link; ENOENT if there is none. */
export async function deleteNeighbor(ctx: RtContext, sel: NeighborSelector): Promise<void> {
  const describe: Describe = { operation: 'delete neighbour', object: `${sel.ip} dev ${sel.dev}` };
  const family = ipFamily(sel.ip, 'ip');
  const data: rt.Neighbor = { family: addressFamily(family), ifindex: await ctx.ifindex(sel.dev, describe) };
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data, attrs: { dst: encodeIp(sel.ip, 'ip') } }, out);
  await ctx.writer.request(rt.MessageType.DELNEIGH, out.bufs, 0, describe);
}
