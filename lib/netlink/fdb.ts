/**
 * Forwarding database entries of a vxlan device (`bridge fdb … self`).
 *
 * They are neighbour messages of family AF_BRIDGE with the NTF_SELF flag (the
 * entry belongs to the device's own table, not to a bridge it is enslaved
 * to) and state NUD_PERMANENT. flannel installs, per peer,
 * `<VtepMAC> dst <PublicIP> self permanent` on flannel.1 with replace
 * semantics: a vxlan FDB entry then has one destination, and a changed
 * PublicIP overwrites the old one. `appendFdb` adds a further destination
 * instead (`bridge fdb append`, used for the all-zeros flooding entry).
 *
 * Failure: `NetlinkError` — ENOENT when `deleteFdb` finds nothing, ENODEV
 * for a missing link, EINVAL for a `dst` of the wrong family for the device.
 */
import { AttrStream, FlagsNew, rt } from './package';
import { LinkRef, RtContext } from './context';
import { isNotFound } from './errors';
import { NDA_DST, NDA_LLADDR, NDMSG_LENGTH, neighborStateNames } from './neighbors';
import { Describe } from './socket';
import { AF_BRIDGE, encodeIp, encodeMac, hostS32, hostU16, ipAttribute, macAttribute, readAttributes, u16beAttribute, u32Attribute } from './wire-format';

/** An entry to install: frames for `mac` go to the VTEP at `dst`. */
export interface FdbSpec {
  dev: LinkRef;
  mac: string;
  dst: string;
}

/** Which entry to delete; without `dst`, every destination of `mac`. */
export interface FdbSelector {
  dev: LinkRef;
  mac: string;
  dst?: string;
}

export interface FdbEntry {
  mac: string;
  /** Remote VTEP; absent on entries without one (e.g. the device's own multicast addresses). */
  dst?: string;
  ifindex: number;
  /** Link name; filled by `listFdb`, absent in events. */
  dev?: string;
  permanent: boolean;
  /** In the device's own table (NTF_SELF) rather than a bridge's. */
  self: boolean;
  /** Remote VNI, when it differs from the device's. */
  vni?: number;
  /** Remote UDP port, when it differs from the device's. */
  port?: number;
}

const NDA_PORT = 6;
const NDA_VNI = 7;
const FDB_ATTRIBUTES = [NDA_LLADDR, NDA_DST, NDA_VNI, NDA_PORT];
/** Positions in FDB_ATTRIBUTES. */
const [LLADDR, DST, VNI, PORT] = [0, 1, 2, 3];
/** ndm_flags bit: the entry is in the device's own table (a flag object per entry from the package's parser is not needed to read one bit). */
const NTF_SELF = 0x02;

/** Decodes the body of an AF_BRIDGE RTM_NEWNEIGH/DELNEIGH message; undefined for other families. */
export function decodeFdb(data: Buffer): FdbEntry | undefined {
  if (data[0] !== AF_BRIDGE) return undefined;
  readAttributes(data, NDMSG_LENGTH, 'fdb', FDB_ATTRIBUTES);
  const mac = macAttribute(data, LLADDR);
  if (mac === undefined) return undefined;
  const entry: FdbEntry = {
    mac,
    ifindex: hostS32(data, 4),
    permanent: neighborStateNames(hostU16(data, 8)).includes('permanent'),
    self: (data[10] & NTF_SELF) !== 0,
  };
  const dst = ipAttribute(data, DST);
  if (dst !== undefined) entry.dst = dst;
  // NDA_VNI is host order, NDA_PORT network order.
  const vni = u32Attribute(data, VNI);
  if (vni !== undefined) entry.vni = vni;
  const port = u16beAttribute(data, PORT);
  if (port !== undefined) entry.port = port;
  return entry;
}

function fdbBody(ifindex: number, mac: string, dst: string | undefined, permanent: boolean): Uint8Array[] {
  const attrs: rt.NeighborAttrs = { lladdr: encodeMac(mac) };
  if (dst !== undefined) attrs.dst = encodeIp(dst, 'dst');
  const data: rt.Neighbor = { family: AF_BRIDGE, ifindex, flags: { self: true } };
  if (permanent) data.state = { permanent: true };
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data, attrs }, out);
  return out.bufs;
}

/** The FDB entries of `ref` (a missing link has none). */
export async function listFdb(ctx: RtContext, ref: LinkRef): Promise<FdbEntry[]> {
  const describe: Describe = { operation: 'list fdb', object: `dev ${ref}` };
  let ifindex: number;
  try {
    ifindex = await ctx.ifindex(ref, describe);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
  // ndm_ifindex doubles as the kernel's "bridge port" dump filter.
  const out = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data: { family: AF_BRIDGE, ifindex }, attrs: {} }, out);
  const replies = await ctx.reader.dumpDecoded(rt.MessageType.GETNEIGH, out.bufs, describe, (type, data) => (type === rt.MessageType.NEWNEIGH ? decodeFdb(data) : undefined));
  const dev = typeof ref === 'string' ? ref : (await ctx.linkNames()).get(ifindex);
  const entries: FdbEntry[] = [];
  for (const e of replies) {
    if (e.ifindex !== ifindex) continue;
    e.dev = dev; // freshly decoded, ours to fill in (a copy per entry cost 2 MB per 5000-peer repair)
    entries.push(e);
  }
  return entries;
}

/** `bridge fdb replace <mac> dev <dev> dst <dst> self permanent`: the entry's destination becomes `dst`. */
export function replaceFdb(ctx: RtContext, spec: FdbSpec): Promise<void> {
  return newFdb(ctx, spec, FlagsNew.CREATE | FlagsNew.REPLACE, 'replace fdb');
}

/** `bridge fdb append <mac> dev <dev> dst <dst> self permanent`: `dst` is added to the entry's destinations. */
export function appendFdb(ctx: RtContext, spec: FdbSpec): Promise<void> {
  return newFdb(ctx, spec, FlagsNew.CREATE | FlagsNew.APPEND, 'append fdb');
}

async function newFdb(ctx: RtContext, spec: FdbSpec, flags: number, operation: string): Promise<void> {
  const describe: Describe = { operation, object: `${spec.mac} dev ${spec.dev} dst ${spec.dst} self permanent` };
  const body = fdbBody(await ctx.ifindex(spec.dev, describe), spec.mac, spec.dst, true);
  await ctx.writer.request(rt.MessageType.NEWNEIGH, body, flags, describe);
}

/** `bridge fdb del <mac> dev <dev> [dst <dst>] self`; ENOENT if there is no such entry. */
export async function deleteFdb(ctx: RtContext, sel: FdbSelector): Promise<void> {
  const describe: Describe = { operation: 'delete fdb', object: `${sel.mac} dev ${sel.dev}${sel.dst ? ` dst ${sel.dst}` : ''} self` };
  const body = fdbBody(await ctx.ifindex(sel.dev, describe), sel.mac, sel.dst, false);
  await ctx.writer.request(rt.MessageType.DELNEIGH, body, 0, describe);
}
