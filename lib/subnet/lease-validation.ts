/**
 * Turning a raw etcd entry into a Lease, or explaining why it cannot be one.
 * A lease written by another node is only data: anything malformed, outside
 * the network or of the wrong size is refused here with a message naming
 * the key and the fault, and the caller skips it.
 *
 * In an IPv6-only network (EnableIPv4 false) a lease must hold an IPv6
 * subnet; its IPv4 part is normally flanneld's empty `0.0.0.0-0`, and a
 * dual-stack lease (a node not yet moved to the new config) is accepted,
 * its IPv4 subnet left unrouted since this node has none.
 */
import type { NetworkConfig } from '../config';
import { carriesIPv4, type Lease } from './lease';
import type { RawKV } from './etcd-registry';
import { LeaseFormatError, decodeLeaseAttrs, parseSubnetKey } from './lease-codec';

export function leaseFromRaw(raw: RawKV, config: NetworkConfig): Lease {
  const { subnet, ipv6Subnet } = parseSubnetKey(raw.key);
  const hasIPv4 = carriesIPv4({ subnet });
  if (config.enableIPv4 && !hasIPv4) {
    throw new LeaseFormatError('key', 'an IPv6-only lease (no IPv4 subnet), but EnableIPv4 is true');
  }
  if (!config.enableIPv4 && config.enableIPv6 && !ipv6Subnet) {
    throw new LeaseFormatError('key', `subnet ${subnet.toString()} has no IPv6 subnet, but EnableIPv4 is false (an IPv6-only network)`);
  }
  if (config.enableIPv4 && config.network) {
    if (!config.network.covers(subnet)) {
      throw new LeaseFormatError('key', `subnet ${subnet.toString()} is outside the network ${config.network.toString()}`);
    }
    if (subnet.prefixLen !== config.subnetLen) {
      throw new LeaseFormatError('key', `subnet ${subnet.toString()} is a /${subnet.prefixLen}, but SubnetLen is ${config.subnetLen}`);
    }
  }
  if (ipv6Subnet && config.enableIPv6 && config.ipv6Network) {
    if (!config.ipv6Network.covers(ipv6Subnet)) {
      throw new LeaseFormatError('key', `subnet ${ipv6Subnet.toString()} is outside the IPv6 network ${config.ipv6Network.toString()}`);
    }
    if (ipv6Subnet.prefixLen !== config.ipv6SubnetLen) {
      throw new LeaseFormatError('key', `subnet ${ipv6Subnet.toString()} is a /${ipv6Subnet.prefixLen}, but IPv6SubnetLen is ${config.ipv6SubnetLen}`);
    }
  }
  const attrs = decodeLeaseAttrs(raw.value);
  return { key: raw.key, subnet, ipv6Subnet, attrs, etcdLeaseId: raw.leaseId, modRevision: raw.modRevision };
}
