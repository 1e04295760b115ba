/**
 * The config twill-cni hands to the plugin that does the work (flannel's
 * plugin does the same): by default the reference `bridge` plugin with
 * `host-local` IPAM on the node's subnet, so that
 *
 *   bridge cni0, isGateway (cni0 holds the subnet's first address),
 *   ipMasq     = !FLANNEL_IPMASQ (masquerade here unless twilld already does),
 *   mtu        = FLANNEL_MTU (the backend's MTU, e.g. external − 50 for vxlan),
 *   ipam       = host-local, ranges [[{subnet: FLANNEL_SUBNET's network}]]
 *                (and FLANNEL_IPV6_SUBNET's), routes [{dst: FLANNEL_NETWORK}, …]
 *
 * One difference from flannel's plugin: with bridge and host-local the routes
 * name their gateway (the subnet's first address, where host-local puts it and
 * where the bridge would send a route without one anyway). The kernel state
 * is the same; but bridge plugins before v1.3.0 fail CHECK on a route without
 * a gateway (containernetworking/plugins#886), and Debian 12 ships v1.1.1.
 *
 * Keys under `delegate` in the config are passed on and win over these
 * defaults, except `name` and `ipam`, which twill-cni owns; keys under the
 * config's `ipam` are passed on, except the ranges, which come from the node's
 * lease. Both refusals are errors, not silent overrides.
 */
import { CniError, ERR } from './errors';
import { describe, isObject, type JsonObject, type NetConf } from './net-conf';
import type { SubnetEnv } from './subnet-env';

export function buildDelegateConf(conf: NetConf, env: SubnetEnv): JsonObject {
  const d: JsonObject = { ...(conf.delegate ?? {}) };
  if ('type' in d && (typeof d.type !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(d.type))) {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, `delegate.type must be the name of a CNI plugin such as "bridge", not ${describe(d.type)}`);
  }
  for (const key of ['name', 'ipam'] as const) {
    if (key in d) {
      throw new CniError(ERR.UNSUPPORTED_FIELD, `delegate.${key} (${describe(d[key])}) is not allowed: twill-cni sets it${key === 'ipam' ? ' from the node\'s subnet; put IPAM settings in the top-level "ipam" object' : ' to the network\'s name'}`);
    }
  }
  d.cniVersion = conf.cniVersion;
  d.name = conf.name;
  d.type ??= 'bridge';
  d.ipMasq ??= !env.ipMasq;
  d.mtu ??= env.mtu;
  if (d.type === 'bridge') {
    d.bridge ??= 'cni0';
    d.isGateway ??= true;
  }
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.ipam = ipamConf(conf, env, String(d.type));
  return d;
}

function ipamConf(conf: NetConf, env: SubnetEnv, delegateType: string): JsonObject {
  const ipam: JsonObject = { ...(conf.ipam ?? {}) };
  for (const key of ['ranges', 'subnet', 'rangeStart', 'rangeEnd'] as const) {
    if (key in ipam) {
      throw new CniError(ERR.UNSUPPORTED_FIELD, `ipam.${key} (${describe(ipam[key])}) is not allowed: twill-cni hands out addresses from the node's subnet in ${conf.subnetFile}`);
    }
  }
  ipam.type ??= 'host-local';
  const given = ipam.routes ?? [];
  if (!Array.isArray(given) || !given.every((r) => isObject(r) && typeof r.dst === 'string')) {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, `ipam.routes must be a list of {"dst": "<cidr>"} objects, not ${describe(ipam.routes)}`);
  }
  const ranges: JsonObject[][] = [];
  if (env.subnet) ranges.push([{ subnet: env.subnet }]);
  if (env.ipv6Subnet) ranges.push([{ subnet: env.ipv6Subnet }]);
  ipam.ranges = ranges;
  const withGateway = delegateType === 'bridge' && ipam.type === 'host-local';
  const route = (dst: string, gw: string | undefined): JsonObject => (withGateway && gw ? { dst, gw } : { dst });
  ipam.routes = [
    ...given,
    ...(env.subnet ? env.networks : []).map((dst) => route(dst, env.gateway)),
    ...(env.ipv6Subnet ? env.ipv6Networks : []).map((dst) => route(dst, env.ipv6Gateway)),
  ];
  return ipam;
}

/** The subnets a saved delegate config hands out from (its host-local ranges), for CHECK. */
export function delegateSubnets(d: JsonObject): string[] {
  const ipam = d.ipam;
  if (!isObject(ipam) || !Array.isArray(ipam.ranges)) return [];
  return ipam.ranges.flatMap((set: unknown) => (Array.isArray(set) ? set : []))
    .map((r: unknown) => (isObject(r) && typeof r.subnet === 'string' ? r.subnet : ''))
    .filter(Boolean);
}
