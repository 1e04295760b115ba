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
}

/** `instances`: the ones still advertised, the configured one first. */
export function leaseAttrsFor(publicIP: string, configuredType: string, instances: readonly AdvertisedInstance[]): LeaseAttrs {
  // A lease without TwillBackends is read as the default settings of its type (backends/instance.ts), so any other is listed.
  const listed = instances.length > 1 || instances.some((r) => r.key !== r.config.type);
  return {
    publicIP,
    publicIPv6: null,
    // flanneld's udp and alloc leases carry no BackendType.
    backendType: configuredType === 'udp' || configuredType === 'alloc' ? undefined : configuredType,
    backendData: instances[0]?.backendData,
    backends: listed
      ? instances.map((r) => {
        const identity = instanceOf(r.config).identity;
        return { type: r.config.type, ...(Object.keys(identity).length ? { settings: identity } : {}), data: r.backendData };
      })
      : undefined,
  };
}
