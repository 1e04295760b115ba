/**
 * IPv4 and IPv6 routes (`ip route`).
 *
 * Ownership: a route carries a protocol number (`rtm_protocol`) that the
 * kernel stores and reports but never interprets. flanneld sets none, so its
 * netlink library fills in RTPROT_BOOT (3) — the same value `ip route add`
 * uses, shown as `proto boot` by `ip -d route` and hidden by plain
 * `ip route`. flanneld's routes are therefore indistinguishable from an
 * administrator's and can only be recognised by device and destination. A
 * twill backend should pass its own number (`RouteProtocol.TWILL`) so that it
 * can list exactly its routes and delete only those (a delete that names a
 * protocol leaves routes of other protocols alone).
 *
 * `replaceRoute` is one atomic NLM_F_CREATE|NLM_F_REPLACE: it overwrites the
 * route with the same destination, table and metric whatever its protocol,
 * with no moment without a route (this is what lets a migration switch a
 * peer from one backend to another without loss).
 *
 * Failure: `NetlinkError` — ESRCH when `deleteRoute` finds nothing, ENODEV
 * for a missing link, EINVAL for an onlink gateway the kernel refuses
 * (e.g. in a namespace whose loopback is down: the kernel then has no local
 * table to classify the gateway with), ENETUNREACH for a gateway that is not
 * reachable without `onlink`.
 */
import { AttrStream, FlagsNew, rt } from './package';
import { LinkRef, RtContext } from './context';
import { InvalidArgumentError, isNotFound, NetlinkError } from './errors';
import { getLink } from './links';
import { Describe } from './socket';
import { addressFamily, encodeIp, formatCidr, hostU32, IpFamily, ipAttribute, ipFamily, ipFamilyOf, parseCidr, readAttributes, u32Attribute } from './wire-format';

/** Route protocol numbers (`rtm_protocol`, /etc/iproute2/rt_protos). */
export const RouteProtocol = {
  /** added by the kernel for an address's prefix */
  KERNEL: 2,
  /** `ip route add` without `proto`; what flanneld's routes carry */
  BOOT: 3,
  STATIC: 4,
  /**
   * twill's own routes. Unassigned in the kernel's and iproute2's lists
   * (0x74, 't'); `ip route` prints it as `proto 116`.
   */
  TWILL: 116,
} as const;

/** Routing tables. */
export const RouteTable = { MAIN: 254, LOCAL: 255 } as const;

/** Route scopes (`rtm_scope`). */
export const RouteScope = { UNIVERSE: 0, LINK: 253, HOST: 254, NOWHERE: 255 } as const;

/** RTNH_F_ONLINK: the gateway is on the link even though no address's prefix says so. The package's RouteFlags lacks it. */
const RTNH_F_ONLINK = 4;

/** A route to install. */
export interface RouteSpec {
  /** '10.244.2.0/24', 'fc00:0:0:2::/64', 'default' (IPv4) or '::/0'. */
  dst: string;
  /** Next hop; omitted for a device route (`ip route add 10.244.0.0/16 dev flannel0`). */
  gateway?: string;
  dev: LinkRef;
  /** Use the gateway even though it is on no subnet of the link (flannel's vxlan and ipip routes). */
  onlink?: boolean;
  /** Default RouteProtocol.BOOT, what `ip route add` and flanneld use. */
  protocol?: number;
  /** Default RouteTable.MAIN. */
  table?: number;
  /** Default: universe with a gateway, link without. */
  scope?: number;
  /** Metric (RTA_PRIORITY); default 0 (IPv6: the kernel makes it 1024). */
  metric?: number;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
}

/** Which route to delete: the destination, narrowed by the other fields given. */
export interface RouteSelector {
  dst: string;
  gateway?: string;
  dev?: LinkRef;
  /** Only a route of this protocol is deleted (protects routes owned by others). */
  protocol?: number;
  /** Default RouteTable.MAIN. */
  table?: number;
  metric?: number;
}

/** What to list. */
export interface RouteFilter {
  /** Default both. */
  family?: IpFamily;
  /** Default RouteTable.MAIN; 'all' for every table. */
  table?: number | 'all';
  protocol?: number;
  dev?: LinkRef;
}

/** A route as the kernel reports it. */
export interface RouteInfo {
  family: IpFamily;
  /** '10.244.2.0/24' ('0.0.0.0/0' or '::/0' for default routes). */
  dst: string;
  gateway?: string;
  /** Output device; absent on multipath and unreachable routes. */
  ifindex?: number;
  /** Name of the output device; filled by `listRoutes`, absent in events. */
  dev?: string;
  onlink: boolean;
  protocol: number;
  scope: number;
  table: number;
  /** 'unicast', 'local', 'broadcast', 'blackhole', 'unreachable', … */
  type: string;
  metric?: number;
  src?: string;
}

/** struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32 at 8. */
const RTMSG_LENGTH = 12;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;

const ROUTE_ATTRIBUTES = [RTA_DST, RTA_TABLE, RTA_GATEWAY, RTA_OIF, RTA_PRIORITY, RTA_PREFSRC];
/** Positions in ROUTE_ATTRIBUTES. */
const [DST, TABLE, GATEWAY, OIF, PRIORITY, PREFSRC] = [0, 1, 2, 3, 4, 5];

/** 'unicast', 'local', …: one string per route type, not a new lower-cased copy per route. */
const routeTypeNames = new Map<number, string>();
function routeTypeName(type: number): string {
  let name = routeTypeNames.get(type);
  if (name === undefined) {
    name = (rt.RouteType[type] ?? String(type)).toLowerCase();
    routeTypeNames.set(type, name);
  }
  return name;
}

/** Decodes the body of an RTM_NEWROUTE/DELROUTE message; undefined for families other than IPv4/IPv6. */
export function decodeRoute(data: Buffer): RouteInfo | undefined {
  const family = ipFamilyOf(data[0]);
  if (!family) return undefined;
  readAttributes(data, RTMSG_LENGTH, 'route', ROUTE_ATTRIBUTES);
  const info: RouteInfo = {
    family,
    dst: formatCidr(ipAttribute(data, DST) ?? (family === 4 ? '0.0.0.0' : '::'), data[1]),
    onlink: (hostU32(data, 8) & RTNH_F_ONLINK) !== 0,
    protocol: data[5],
    scope: data[6],
    // rtm_table is a u8; tables above 255 are only in RTA_TABLE.
    table: u32Attribute(data, TABLE) ?? data[4],
    type: routeTypeName(data[7]),
  };
  const gateway = ipAttribute(data, GATEWAY);
  if (gateway !== undefined) info.gateway = gateway;
  const oif = u32Attribute(data, OIF);
  if (oif) info.ifindex = oif;
  const metric = u32Attribute(data, PRIORITY);
  if (metric !== undefined) info.metric = metric;
  const src = ipAttribute(data, PREFSRC);
  if (src !== undefined) info.src = src;
  return info;
}

const decodeRouteReply = (type: number, data: Buffer): RouteInfo | undefined => (type === rt.MessageType.NEWROUTE ? decodeRoute(data) : undefined);

/** `10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 116`, for error messages. */
function describeRoute(r: RouteSelector & { onlink?: boolean }): string {
  let s = r.dst;
  if (r.gateway) s += ` via ${r.gateway}`;
  if (r.dev !== undefined) s += ` dev ${r.dev}`;
  if (r.onlink) s += ' onlink';
  if (r.protocol !== undefined) s += ` proto ${r.protocol}`;
  if (r.table !== undefined && r.table !== RouteTable.MAIN) s += ` table ${r.table}`;
  if (r.metric !== undefined) s += ` metric ${r.metric}`;
  return s;
}

export async function listRoutes(ctx: RtContext, filter: RouteFilter = {}): Promise<RouteInfo[]> {
  const describe: Describe = { operation: 'list routes', object: filter.dev !== undefined ? `dev ${filter.dev}` : '' };
  let ifindex: number | undefined;
  if (filter.dev !== undefined) {
    try {
      ifindex = await ctx.ifindex(filter.dev, describe);
    } catch (err) {
      if (isNotFound(err)) return []; // no device, no routes through it
      throw err;
    }
  }
  const out = new AttrStream();
  rt.formatRouteMessage({ kind: 'route', data: { family: filter.family ? addressFamily(filter.family) : 0 }, attrs: {} }, out);
  const [replies, names] = await Promise.all([ctx.reader.dumpDecoded(rt.MessageType.GETROUTE, out.bufs, describe, decodeRouteReply), ctx.linkNames()]);
  const table = filter.table ?? RouteTable.MAIN;
  const routes: RouteInfo[] = [];
  for (const r of replies) {
    if (filter.family && r.family !== filter.family) continue;
    if (table !== 'all' && r.table !== table) continue;
    if (filter.protocol !== undefined && r.protocol !== filter.protocol) continue;
    if (ifindex !== undefined && r.ifindex !== ifindex) continue;
    if (r.ifindex !== undefined) r.dev = names.get(r.ifindex);
    routes.push(r);
  }
  return routes;
}

/**
 * The route the kernel would use to send to one IPv4 address now (`ip route
 * get <ip>`): one RTM_GETROUTE request, not a dump. The reply carries the
 * address as a /32 (/128) destination, the output device and, when the kernel
 * would hand the packet to a router, the gateway — with the most specific
 * route, policy rules and `onlink` gateways already taken into account.
 * Undefined when the kernel has no route (ENETUNREACH) or an unreachable
 * one (EHOSTUNREACH). `dev` (the device's name) costs one more request;
 * `resolveDev: false` skips it.
 */
export async function routeGet(ctx: RtContext, dst: string, resolveDev = true): Promise<RouteInfo | undefined> {
  const family = ipFamily(dst, 'dst');
  const describe: Describe = { operation: 'get route', object: dst };
  const out = new AttrStream();
  rt.formatRouteMessage({ kind: 'route', data: { family: addressFamily(family), dstLen: family === 4 ? 32 : 128 }, attrs: { dst: encodeIp(dst, 'dst') } }, out);
  let replies: RouteInfo[];
  try {
    replies = await ctx.reader.requestDecoded(rt.MessageType.GETROUTE, out.bufs, 0, describe, decodeRouteReply);
  } catch (err) {
    if (err instanceof NetlinkError && (err.code === 'ENETUNREACH' || err.code === 'EHOSTUNREACH')) return undefined;
    throw err;
  }
  const route = replies[0];
  if (!route) throw new NetlinkError(describe.operation, describe.object, 'EBADMSG', 'the kernel answered without a route');
  if (resolveDev && route.ifindex !== undefined) route.dev = (await getLink(ctx, route.ifindex))?.name;
  return route;
}

/** Installs the route, atomically replacing one with the same destination, table and metric. */
export function replaceRoute(ctx: RtContext, spec: RouteSpec): Promise<void> {
  return newRoute(ctx, spec, FlagsNew.CREATE | FlagsNew.REPLACE, 'replace route');
}

async function newRoute(ctx: RtContext, spec: RouteSpec, flags: number, operation: string): Promise<void> {
  const dst = parseCidr(spec.dst, 'dst');
  const describe: Describe = { operation, object: describeRoute(spec) };
  const table = spec.table ?? RouteTable.MAIN;
  const attrs: rt.RouteAttrs = { oif: await ctx.ifindex(spec.dev, describe), table };
  if (dst.prefixLen > 0) attrs.dst = encodeIp(dst.ip, 'dst');
  if (spec.gateway !== undefined) attrs.gateway = encodeSameFamily(spec.gateway, dst.family, 'gateway');
  if (spec.metric !== undefined) attrs.priority = spec.metric;
  if (spec.src !== undefined) attrs.prefsrc = encodeSameFamily(spec.src, dst.family, 'src');
  const data: rt.Route = {
    family: addressFamily(dst.family),
    dstLen: dst.prefixLen,
    table: table < 256 ? table : 0,
    protocol: spec.protocol ?? RouteProtocol.BOOT,
    scope: spec.scope ?? (spec.gateway !== undefined ? RouteScope.UNIVERSE : RouteScope.LINK),
    type: rt.RouteType.UNICAST,
    // The package encodes unnamed flag bits from `__unknown` as they are.
    flags: spec.onlink ? { __unknown: RTNH_F_ONLINK } : {},
  };
  const out = new AttrStream();
  rt.formatRouteMessage({ kind: 'route', data, attrs }, out);
  await ctx.writer.request(rt.MessageType.NEWROUTE, out.bufs, flags, describe);
}

/** Deletes the route(s) matching the selector; ESRCH if none. */
export async function deleteRoute(ctx: RtContext, sel: RouteSelector): Promise<void> {
  const dst = parseCidr(sel.dst, 'dst');
  const describe: Describe = { operation: 'delete route', object: describeRoute(sel) };
  const table = sel.table ?? RouteTable.MAIN;
  const attrs: rt.RouteAttrs = { table };
  if (dst.prefixLen > 0) attrs.dst = encodeIp(dst.ip, 'dst');
  if (sel.dev !== undefined) attrs.oif = await ctx.ifindex(sel.dev, describe);
  if (sel.gateway !== undefined) attrs.gateway = encodeSameFamily(sel.gateway, dst.family, 'gateway');
  if (sel.metric !== undefined) attrs.priority = sel.metric;
  const data: rt.Route = {
    family: addressFamily(dst.family),
    dstLen: dst.prefixLen,
    table: table < 256 ? table : 0,
    protocol: sel.protocol ?? 0,
    // NOWHERE and type 0 are wildcards to the kernel's route matching.
    scope: RouteScope.NOWHERE,
  };
  const out = new AttrStream();
  rt.formatRouteMessage({ kind: 'route', data, attrs }, out);
  await ctx.writer.request(rt.MessageType.DELROUTE, out.bufs, 0, describe);
}

function encodeSameFamily(ip: string, family: IpFamily, field: string): Buffer {
  const f = ipFamily(ip, field);
  if (f !== family) {
    // IPv4 gateways for IPv6 routes (RTA_VIA) are not supported here.
    throw new InvalidArgumentError(field, ip, `an IPv${family} address like the destination`);
  }
  return encodeIp(ip, field);
}

