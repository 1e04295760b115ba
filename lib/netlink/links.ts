/**
 * Network devices: read them (with their vxlan settings decoded, so that an
 * existing device is adopted only when it matches), create vxlan and ipip
 * devices, delete them, and change state, MTU and MAC.
 *
 * Failure: kernel refusals are `NetlinkError`s (ENODEV: no such link, EEXIST:
 * a device of that name exists); creating a type the kernel lacks is an
 * `UnsupportedLinkKindError`. Reading a missing link is not an error:
 * `getLink` resolves with undefined.
 */
import { AttrStream, FlagsNew, ifla, putU32, putU8, rt, StreamData } from './package';
import { RtContext, LinkRef } from './context';
import { InvalidArgumentError, isNotFound, NetlinkError, UnsupportedLinkKindError } from './errors';
import { Describe } from './socket';
import { decodeIp, decodeMac, encodeIp, encodeMac, flatten, ipFamily } from './wire-format';

/** A device as the kernel reports it. */
export interface LinkInfo {
  name: string;
  index: number;
  /** 'vxlan', 'veth', 'bridge', 'tun', 'ipip', …; undefined for physical devices and loopback. */
  kind?: string;
  mtu: number;
  /** Hardware address; undefined for devices without one (tun, ipip). */
  mac?: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  /** ifindex of the bridge (or bond) this device is enslaved to. */
  master?: number;
  /** The vxlan settings, for kind 'vxlan'. */
  vxlan?: VxlanInfo;
  /** IFLA_IFALIAS, when set (`ip link set … alias`). */
  alias?: string;
}

/** The IFLA_INFO_DATA of a vxlan device. */
export interface VxlanInfo {
  vni: number;
  /** UDP destination port (8472 is Linux's and flannel's default). */
  port: number;
  /** Source address of the encapsulation, when pinned. */
  local?: string;
  /** Remote or multicast group, when set (flannel sets none). */
  group?: string;
  /** ifindex of the underlay device, when pinned. */
  dev?: number;
  learning: boolean;
  gbp: boolean;
}

/** A vxlan device to create. flannel's is `flannel.<VNI>`, port 8472, learning off. */
export interface VxlanSpec {
  name: string;
  vni: number;
  port: number;
  /** Source address of the encapsulation (IPv4 or IPv6). */
  localIP?: string;
  /** Underlay device (name or ifindex). */
  dev?: LinkRef;
  learning: boolean;
  gbp: boolean;
  mtu?: number;
  mac?: string;
}

/** An ipip device to create. flannel's is `flannel.ipip`, remote any, local = the interface IP. */
export interface IpipSpec {
  name: string;
  /** Source address of the tunnel. */
  local?: string;
  /** Underlay device (name or ifindex). */
  dev?: LinkRef;
  /** Outer TTL; 0 (default) inherits the inner packet's. */
  ttl?: number;
  mtu?: number;
}

const RTM_SETLINK = rt.MessageType.SETLINK;

function linkBody(data: rt.Link, attrs: ifla.LinkAttrs): Uint8Array[] {
  const out = new AttrStream();
  rt.formatLinkMessage({ kind: 'link', data, attrs }, out);
  return out.bufs;
}

/** Addresses a link by index or by name in a request. */
function selector(ref: LinkRef): { data: rt.Link; attrs: ifla.LinkAttrs } {
  return typeof ref === 'number' ? { data: { index: ref }, attrs: {} } : { data: {}, attrs: { ifname: ref } };
}

/** Decodes an RTM_NEWLINK message (from a dump, a GET or an event). */
export function decodeLink(msg: rt.LinkMessage): LinkInfo {
  const { data, attrs } = msg;
  const info: LinkInfo = {
    name: attrs.ifname ?? '',
    index: data.index ?? 0,
    mtu: attrs.mtu ?? 0,
    up: data.flags?.up === true,
    lowerUp: data.flags?.lowerUp === true,
  };
  if (attrs.address && attrs.address.length === 6) info.mac = decodeMac(attrs.address);
  if (attrs.master) info.master = attrs.master;
  if (attrs.ifalias) info.alias = attrs.ifalias;
  if (attrs.linkinfo) {
    const linkinfo = ifla.parseInfo(attrs.linkinfo);
    if (linkinfo.kind) info.kind = linkinfo.kind;
    if (linkinfo.kind === 'vxlan' && linkinfo.data) info.vxlan = decodeVxlan(ifla.parseVxlan(linkinfo.data));
  }
  return info;
}

function decodeVxlan(v: ifla.Vxlan): VxlanInfo {
  const info: VxlanInfo = {
    vni: v.id ?? 0,
    // IFLA_VXLAN_PORT is big-endian; the package hands it over raw.
    port: v.port && v.port.length === 2 ? v.port.readUInt16BE(0) : 0,
    learning: v.learning === 1,
    gbp: v.gbp === true,
  };
  const local = v.local ?? v.local6;
  if (local) info.local = decodeIp(local);
  const group = v.group ?? v.group6;
  if (group && !group.every((b) => b === 0)) info.group = decodeIp(group);
  if (v.link) info.dev = v.link;
  return info;
}

/**
 * The settings of `link` that differ from `spec` and that cannot be changed
 * without recreating the device (kind, VNI, port, local address, underlay
 * device, learning, GBP). Empty means the device may be adopted; MTU, MAC and
 * the up flag can be set afterwards. `spec.dev` is compared only when given
 * as an ifindex.
 */
export function vxlanMismatches(link: LinkInfo, spec: VxlanSpec): string[] {
  const v = link.vxlan;
  if (link.kind !== 'vxlan' || !v) return [`kind is ${link.kind ?? 'none'}, want vxlan`];
  const out: string[] = [];
  if (v.vni !== spec.vni) out.push(`vni is ${v.vni}, want ${spec.vni}`);
  if (v.port !== spec.port) out.push(`dstport is ${v.port}, want ${spec.port}`);
  const wantLocal = spec.localIP === undefined ? undefined : decodeIp(encodeIp(spec.localIP, 'localIP'));
  if (v.local !== wantLocal) out.push(`local is ${v.local ?? 'unset'}, want ${wantLocal ?? 'unset'}`);
  if (typeof spec.dev === 'number' && v.dev !== spec.dev) out.push(`dev is ${v.dev ?? 'unset'}, want ${spec.dev}`);
  if (v.learning !== spec.learning) out.push(`learning is ${v.learning ? 'on' : 'off'}, want ${spec.learning ? 'on' : 'off'}`);
  if (v.gbp !== spec.gbp) out.push(`gbp is ${v.gbp ? 'on' : 'off'}, want ${spec.gbp ? 'on' : 'off'}`);
  return out;
}

export async function getLink(ctx: RtContext, ref: LinkRef): Promise<LinkInfo | undefined> {
  const { data, attrs } = selector(ref);
  try {
    const replies = await ctx.reader.request(rt.MessageType.GETLINK, linkBody(data, attrs), 0, { operation: 'get link', object: String(ref) });
    const link = replies.find((m): m is rt.LinkMessage => m.kind === 'link');
    return link ? decodeLink(link) : undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function listLinks(ctx: RtContext): Promise<LinkInfo[]> {
  const replies = await ctx.reader.dump(rt.MessageType.GETLINK, linkBody({}, {}), { operation: 'list links', object: '' });
  return replies.filter((m): m is rt.LinkMessage => m.kind === 'link').map(decodeLink);
}

/** Creates a vxlan device (down; see `setLinkUp`). Fails with EEXIST when the name is taken. */
export async function createVxlan(ctx: RtContext, spec: VxlanSpec): Promise<LinkInfo> {
  checkInteger('vni', spec.vni, 0, 0xffffff);
  checkInteger('port', spec.port, 1, 0xffff);
  const describe: Describe = {
    operation: 'create link',
    object: `${spec.name} type vxlan id ${spec.vni} dstport ${spec.port}${spec.localIP ? ` local ${spec.localIP}` : ''}` +
      `${spec.dev !== undefined ? ` dev ${spec.dev}` : ''}${spec.learning ? '' : ' nolearning'}${spec.gbp ? ' gbp' : ''}`,
  };
  const port = Buffer.alloc(2);
  port.writeUInt16BE(spec.port, 0); // IFLA_VXLAN_PORT is network order
  const data: ifla.Vxlan = { id: spec.vni, port, learning: spec.learning ? 1 : 0 };
  if (spec.gbp) data.gbp = true;
  if (spec.localIP !== undefined) {
    if (ipFamily(spec.localIP, 'localIP') === 4) data.local = encodeIp(spec.localIP);
    else data.local6 = encodeIp(spec.localIP);
  }
  if (spec.dev !== undefined) data.link = await ctx.ifindex(spec.dev, describe);
  await createLink(ctx, spec.name, 'vxlan', ifla.formatVxlan(data), { mtu: spec.mtu, mac: spec.mac }, describe);
  return mustGet(ctx, spec.name, describe);
}

/** Creates an ipip device (down). On kernels without ipip this is an `UnsupportedLinkKindError`. */
export async function createIpip(ctx: RtContext, spec: IpipSpec): Promise<LinkInfo> {
  const describe: Describe = {
    operation: 'create link',
    object: `${spec.name} type ipip remote any${spec.local ? ` local ${spec.local}` : ''}${spec.dev !== undefined ? ` dev ${spec.dev}` : ''}`,
  };
  // Written by hand: the package's `ifla.formatIptun` types IFLA_IPTUN_LOCAL
  // as a host-order u32, while the kernel wants the address in network order.
  const IFLA_IPTUN_LINK = 1;
  const IFLA_IPTUN_LOCAL = 2;
  const IFLA_IPTUN_TTL = 4;
  const IFLA_IPTUN_PMTUDISC = 10;
  const link = spec.dev !== undefined ? await ctx.ifindex(spec.dev, describe) : undefined;
  const data = (out: AttrStream): void => {
    if (link !== undefined) out.push(IFLA_IPTUN_LINK, putU32(link));
    if (spec.local !== undefined) {
      if (ipFamily(spec.local, 'local') !== 4) throw new InvalidArgumentError('local', spec.local, 'an IPv4 address');
      out.push(IFLA_IPTUN_LOCAL, encodeIp(spec.local));
    }
    out.push(IFLA_IPTUN_TTL, putU8(spec.ttl ?? 0));
    out.push(IFLA_IPTUN_PMTUDISC, putU8(1));
  };
  await createLink(ctx, spec.name, 'ipip', data, { mtu: spec.mtu }, describe);
  return mustGet(ctx, spec.name, describe);
}

/**
 * A kernel WireGuard device (no keys, no peers: those are set over generic
 * netlink, which twill does not speak). Used to find out whether the kernel
 * has WireGuard: UnsupportedLinkKindError when it does not.
 */
export async function createWireguard(ctx: RtContext, name: string): Promise<LinkInfo> {
  const describe: Describe = { operation: 'create link', object: `${name} type wireguard` };
  await createLink(ctx, name, 'wireguard', () => undefined, {}, describe);
  return mustGet(ctx, name, describe);
}

async function createLink(
  ctx: RtContext,
  name: string,
  kind: string,
  kindData: StreamData,
  common: { mtu?: number; mac?: string },
  describe: Describe,
): Promise<void> {
  const attrs: ifla.LinkAttrs = {
    ifname: name,
    // The package types IFLA_LINKINFO as a Buffer but its encoders return
    // writer functions: flatten both levels.
    linkinfo: flatten(ifla.formatInfo({ kind, data: flatten(kindData) })),
  };
  if (common.mtu !== undefined) attrs.mtu = common.mtu;
  if (common.mac !== undefined) attrs.address = encodeMac(common.mac);
  try {
    await ctx.writer.request(rt.MessageType.NEWLINK, linkBody({}, attrs), FlagsNew.CREATE | FlagsNew.EXCL, describe);
  } catch (err) {
    // rtnl_newlink answers EOPNOTSUPP ("Unknown device type") when no module provides the kind.
    if (err instanceof NetlinkError && err.code === 'EOPNOTSUPP') throw new UnsupportedLinkKindError(describe.operation, describe.object, kind);
    throw err;
  }
}

async function mustGet(ctx: RtContext, name: string, describe: Describe): Promise<LinkInfo> {
  const link = await getLink(ctx, name);
  if (!link) throw new NetlinkError(describe.operation, describe.object, 'ENODEV', 'the device vanished right after it was created');
  return link;
}

export async function deleteLink(ctx: RtContext, ref: LinkRef): Promise<void> {
  const { data, attrs } = selector(ref);
  await ctx.writer.request(rt.MessageType.DELLINK, linkBody(data, attrs), 0, { operation: 'delete link', object: String(ref) });
}

export async function setLinkUp(ctx: RtContext, ref: LinkRef, up = true): Promise<void> {
  const { data, attrs } = selector(ref);
  const body = linkBody({ ...data, flags: up ? { up: true } : {}, change: { up: true } }, attrs);
  await ctx.writer.request(RTM_SETLINK, body, 0, { operation: 'set link', object: `${ref} ${up ? 'up' : 'down'}` });
}

export async function setMtu(ctx: RtContext, ref: LinkRef, mtu: number): Promise<void> {
  checkInteger('mtu', mtu, 68, 0xffff);
  const { data, attrs } = selector(ref);
  await ctx.writer.request(RTM_SETLINK, linkBody(data, { ...attrs, mtu }), 0, { operation: 'set link', object: `${ref} mtu ${mtu}` });
}

/** Sets the device's alias (IFLA_IFALIAS), a note kept with the device for whoever finds it again. */
export async function setAlias(ctx: RtContext, ref: LinkRef, alias: string): Promise<void> {
  const { data, attrs } = selector(ref);
  await ctx.writer.request(RTM_SETLINK, linkBody(data, { ...attrs, ifalias: alias }), 0, { operation: 'set link', object: `${ref} alias ${JSON.stringify(alias)}` });
}

/** Turns learning of a vxlan device on or off in place (the kernel's vxlan changelink), keeping its FDB and routes. */
export async function setVxlanLearning(ctx: RtContext, ref: LinkRef, learning: boolean): Promise<void> {
  const { data, attrs } = selector(ref);
  const linkinfo = flatten(ifla.formatInfo({ kind: 'vxlan', data: flatten(ifla.formatVxlan({ learning: learning ? 1 : 0 })) }));
  await ctx.writer.request(rt.MessageType.NEWLINK, linkBody(data, { ...attrs, linkinfo }), 0, { operation: 'set link', object: `${ref} type vxlan ${learning ? 'learning' : 'nolearning'}` });
}

function checkInteger(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(field, value, `an integer from ${min} to ${max}`);
}
