/**
 * Turning a raw etcd entry into a Lease, or explaining why it cannot be one.
 * A lease written by another node is only data: anything malformed, outside
 * the network or of the wrong size is refused here with a message naming
 * the key and the fault, and the caller skips it.
 */
import type { NetworkConfig } from '../config';
import type { Lease } from './lease';
import type { RawKV } from './etcd-registry';
import { LeaseFormatError, decodeLeaseAttrs, parseSubnetKey } from './lease-codec';

export function leaseFromRaw(raw: RawKV, config: NetworkConfig): Lease {
  const { subnet, ipv6Subnet } = parseSubnetKey(raw.key);
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
