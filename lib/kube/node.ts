/**
 * The parts of a Kubernetes Node that twill reads (the ones flanneld's kube
 * subnet manager reads, plus addresses and conditions for diagnostics), and
 * the check that turns the API's JSON into one. Everything else in the
 * object is dropped: a list of thousands of Nodes then costs what twill
 * uses, not what the kubelet reports (images alone can be kilobytes).
 */

export interface KubeNode {
  readonly metadata: {
    readonly name: string;
    readonly uid?: string;
    readonly resourceVersion: string;
    readonly annotations: Readonly<Record<string, string>>;
    readonly labels: Readonly<Record<string, string>>;
    readonly creationTimestamp?: string;
    readonly deletionTimestamp?: string;
  };
  readonly spec: {
    readonly podCIDR?: string;
    readonly podCIDRs?: readonly string[];
    readonly unschedulable?: boolean;
  };
  readonly status: {
    readonly addresses: readonly { readonly type: string; readonly address: string }[];
    readonly conditions: readonly NodeCondition[];
  };
}

export interface NodeCondition {
  readonly type: string;
  readonly status: string;
  readonly reason?: string;
  readonly message?: string;
  readonly lastHeartbeatTime?: string;
  readonly lastTransitionTime?: string;
}

/** Why a JSON value is not a Node; the caller wraps it into its own error. */
export class NodeShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeShapeError';
  }
}

export function toKubeNode(raw: unknown): KubeNode {
  const o = obj(raw, 'the object');
  const meta = obj(o.metadata, 'metadata');
  const name = meta.name;
  if (typeof name !== 'string' || name === '') throw new NodeShapeError('metadata.name is missing');
  const where = `Node ${JSON.stringify(name.slice(0, 80))}`;
  const rv = meta.resourceVersion;
  if (typeof rv !== 'string' || rv === '') throw new NodeShapeError(`${where}: metadata.resourceVersion is missing`);
  const spec = o.spec === undefined ? {} : obj(o.spec, `${where}: spec`);
  const status = o.status === undefined ? {} : obj(o.status, `${where}: status`);
  const podCIDR = optString(spec.podCIDR, `${where}: spec.podCIDR`);
  const podCIDRs = spec.podCIDRs === undefined || spec.podCIDRs === null ? undefined
    : list(spec.podCIDRs, `${where}: spec.podCIDRs`).map((c, i) => str(c, `${where}: spec.podCIDRs[${i}]`));
  return {
    metadata: {
      name,
      uid: optString(meta.uid, `${where}: metadata.uid`),
      resourceVersion: rv,
      annotations: stringMap(meta.annotations, `${where}: metadata.annotations`),
      labels: stringMap(meta.labels, `${where}: metadata.labels`),
      creationTimestamp: optString(meta.creationTimestamp, `${where}: metadata.creationTimestamp`),
      deletionTimestamp: optString(meta.deletionTimestamp, `${where}: metadata.deletionTimestamp`),
    },
    spec: {
      ...(podCIDR !== undefined ? { podCIDR } : {}),
      ...(podCIDRs !== undefined ? { podCIDRs } : {}),
      ...(typeof spec.unschedulable === 'boolean' ? { unschedulable: spec.unschedulable } : {}),
    },
    status: {
      addresses: (status.addresses === undefined || status.addresses === null ? [] : list(status.addresses, `${where}: status.addresses`)).map((a, i) => {
        const e = obj(a, `${where}: status.addresses[${i}]`);
        return { type: str(e.type, `${where}: status.addresses[${i}].type`), address: str(e.address, `${where}: status.addresses[${i}].address`) };
      }),
      conditions: (status.conditions === undefined || status.conditions === null ? [] : list(status.conditions, `${where}: status.conditions`)).map((c, i) => {
        const e = obj(c, `${where}: status.conditions[${i}]`);
        const at = `${where}: status.conditions[${i}]`;
        return {
          type: str(e.type, `${at}.type`),
          status: str(e.status, `${at}.status`),
          reason: optString(e.reason, `${at}.reason`),
          message: optString(e.message, `${at}.message`),
          lastHeartbeatTime: optString(e.lastHeartbeatTime, `${at}.lastHeartbeatTime`),
          lastTransitionTime: optString(e.lastTransitionTime, `${at}.lastTransitionTime`),
        };
      }),
    },
  };
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new NodeShapeError(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new NodeShapeError(`${what} is not a list`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new NodeShapeError(`${what} is not a string`);
  return v;
}

function optString(v: unknown, what: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, what);
}

function stringMap(v: unknown, what: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  const o = obj(v, what);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(o)) out[k] = str(val, `${what}[${JSON.stringify(k)}]`);
  return out;
}
