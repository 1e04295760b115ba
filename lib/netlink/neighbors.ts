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
import { addressFamily, decodeIp, decodeMac, encodeIp, encodeMac, IpFamily, ipFamily, ipFamilyOf } from './wire-format';

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
  /** NUD states set: 'permanent', 'reachable', 'stale', 'incomplete', 'failed', 'noarp', … */
  state: string[];
  permanent: boolean;
}

/** Names of the true members of one of the package's flag objects (`{ permanent: true }` → ['permanent']). */
export function flagNames(flags: object | undefined): string[] {
  if (!flags) return [];
  return Object.entries(flags).filter(([name, on]) => name !== '__unknown' && on === true).map(([name]) => name);
}

/** Decodes an ARP/NDP RTM_NEWNEIGH message; undefined for other families (FDB entries are family AF_BRIDGE). */
export function decodeNeighbor(msg: rt.NeighborMessage): NeighborInfo | undefined {
  const family = ipFamilyOf(msg.data.family ?? 0);
  if (!family || !msg.attrs.dst) return undefined;
  const state = flagNames(msg.data.state);
  const info: NeighborInfo = { family, ip: decodeIp(msg.attrs.dst), ifindex: msg.data.ifindex ?? 0, state, permanent: state.includes('permanent') };
  if (msg.attrs.lladdr && msg.attrs.lladdr.length === 6) info.mac = decodeMac(msg.attrs.lladdr);
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
  const [replies, names] = await Promise.all([ctx.reader.dump(rt.MessageType.GETNEIGH, out.bufs, describe), ctx.linkNames()]);
  const result: NeighborInfo[] = [];
  for (const m of replies) {
    if (m.kind !== 'neighbor') continue;
    const n = decodeNeighbor(m);
    if (!n || n.family !== family || (ifindex !== undefined && n.ifindex !== ifindex)) continue;
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
