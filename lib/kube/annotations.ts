/**
 * The Node annotation names flanneld reads and writes in kube mode, built
 * from `--kube-annotation-prefix` by flanneld's rules (flannel
 * `pkg/subnet/kube/annotations.go`, `newAnnotations`; facts in
 * docs/flanneld-kube-mode.md):
 *
 *   - at most one "/" in the prefix;
 *   - no "/": one is appended (`flannel.alpha.coreos.com` → `flannel.alpha.coreos.com/`);
 *   - otherwise "-" is appended unless it ends in "/" or "-" (`example.com/net` → `example.com/net-`);
 *   - the result must match flanneld's pattern, which is not anchored at
 *     the start (so `Foo.example.com/` passes here as in flanneld; the API
 *     server then refuses the key when it is written).
 */

export const DEFAULT_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com';

export interface FlannelAnnotations {
  /** `…kube-subnet-manager`: "true" on every Node flanneld manages; only those are peers. */
  readonly subnetKubeManaged: string;
  readonly backendData: string;
  readonly backendV6Data: string;
  readonly backendType: string;
  readonly publicIP: string;
  readonly publicIPv6: string;
  /** Set by the operator: the address to publish instead of the agent's own. */
  readonly publicIPOverwrite: string;
  readonly publicIPv6Overwrite: string;
  /** Set by the operator: used as --public-ip(v6) at start (later flanneld). */
  readonly nodePublicIP: string;
  readonly nodePublicIPv6: string;
  /** twill's own: the backends this node terminates (JSON, as TwillBackends in an etcd lease); flanneld ignores it. */
  readonly twillBackends: string;
}

export class AnnotationPrefixError extends Error {
  constructor(readonly prefix: string, why: string) {
    super(`--kube-annotation-prefix ${JSON.stringify(prefix)} ${why}`);
    this.name = 'AnnotationPrefixError';
  }
}

// flanneld's pattern, unanchored at the start as Go's regexp.MatchString leaves it.
const PREFIX_PATTERN = /(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/;

export function flannelAnnotations(prefix: string = DEFAULT_ANNOTATION_PREFIX): FlannelAnnotations {
  const slashes = prefix.split('/').length - 1;
  if (slashes > 1) throw new AnnotationPrefixError(prefix, 'may contain at most one "/"');
  let p = slashes === 0 ? `${prefix}/` : prefix;
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-';
  if (!PREFIX_PATTERN.test(p)) {
    throw new AnnotationPrefixError(prefix, 'must be a lowercase DNS name, optionally followed by "/" and a lowercase word (e.g. flannel.alpha.coreos.com or example.com/net)');
  }
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    backendType: `${p}backend-type`,
    publicIP: `${p}public-ip`,
    publicIPv6: `${p}public-ipv6`,
    publicIPOverwrite: `${p}public-ip-overwrite`,
    publicIPv6Overwrite: `${p}public-ipv6-overwrite`,
    nodePublicIP: `${p}node-public-ip`,
    nodePublicIPv6: `${p}node-public-ipv6`,
    twillBackends: `${p}twill-backends`,
  };
}
