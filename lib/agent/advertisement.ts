/**
 * What this node publishes in its lease: BackendType and BackendData of the
 * configured backend, as flanneld does, plus `TwillBackends` — every
 * instance it terminates — whenever that is more than flanneld's fields
 * can say (a second instance during a migration, or non-default settings).
 */
import type { BackendConfig } from '../config';
import type { LeaseAttrs } from '../subnet';
import { instanceOf } from '../../backends';

export interface AdvertisedInstance {
  readonly key: string;
  readonly config: BackendConfig;
  readonly backendData?: unknown;
  readonly backendV6Data?: unknown;
}

/** A running instance as the lease sees it. */
export interface InstanceState extends AdvertisedInstance {
  /** It left the lease on its way out (lib/agent/retirement.ts). */
  readonly withdrawn: boolean;
  /**
   * Its peer table and kernel state have been planned and applied once.
   * One started by a live config change may run while a reconcile that
   * began before it is still publishing: a peer that saw it in the lease
   * then would send to an engine that knows no peer yet, and lose packets.
   */
  readonly planned: boolean;
}

/**
 * The instances the lease lists, in `running` order (the configured one
 * first), and the type it names as BackendType: the configured type while
 * that instance is listed, else the first listed one's, so that flanneld's
 * fields never name a backend the lease does not carry.
 */
export function advertisedInstances(configuredType: string, running: readonly InstanceState[]): { configuredType: string; instances: AdvertisedInstance[] } {
  const instances = running.filter((r) => !r.withdrawn && r.planned);
  const primary = instances.some((r) => r.config.type === configuredType) ? configuredType : (instances[0]?.config.type ?? configuredType);
  return { configuredType: primary, instances };
}

/** `instances`: the ones still advertised, the configured one first. */
/** `publicIPv6`: the node's IPv6 address when the network carries IPv6, else undefined (PublicIPv6 null, as flanneld writes it). */
export function leaseAttrsFor(publicIP: string, publicIPv6: string | undefined, configuredType: string, instances: readonly AdvertisedInstance[]): LeaseAttrs {
  // A lease without TwillBackends is read as the default settings of its type (backends/instance.ts), so any other is listed.
  const listed = instances.length > 1 || instances.some((r) => r.key !== r.config.type);
  return {
    publicIP,
    publicIPv6: publicIPv6 ?? null,
    // flanneld's udp and alloc leases carry no BackendType.
    backendType: configuredType === 'udp' || configuredType === 'alloc' ? undefined : configuredType,
    backendData: instances[0]?.backendData,
    backendV6Data: instances[0]?.backendV6Data,
    backends: listed
      ? instances.map((r) => {
        const identity = instanceOf(r.config).identity;
        return { type: r.config.type, ...(Object.keys(identity).length ? { settings: identity } : {}), data: r.backendData, v6Data: r.backendV6Data };
      })
      : undefined,
  };
}
