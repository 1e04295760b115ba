/**
 * One look at a cluster run by twilld --kube-subnet-mgr, for the operator
 * CLI (`twill status`, `twill diagnose`): every Node, then the network
 * config from a net-conf.json file or a ConfigMap key (the one
 * manifests/kubernetes/twill-kube.yaml installs).
 *
 * Failure: `readKubeCluster` is bounded by a deadline (3.5 s per request
 * and for the whole read) and rejects with an Error whose message names the
 * API server and, when the server refused, the verb and resource
 * (KubeApiError) — a command that gives up within about 5 s.
 */
import { promises as fs } from 'fs';
import type { FlannelAnnotations } from './annotations';
import type { KubeClient, NodeList } from './client';
import type { KubeNode } from './node';
import { KubeApiError } from './errors';
import { isAbortError } from './transport';

/** Where twill-kube.yaml keeps the network config. */
export const DEFAULT_KUBE_NET_CONF = 'kube-system/twill-cfg';
export const NET_CONF_KEY = 'net-conf.json';

/** How long one read (and all reads of one look) may take before the command gives up. */
export const KUBE_DEADLINE_MS = 3500;

/** Where the network config comes from in Kubernetes mode. */
export type NetConfSource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'configmap'; readonly namespace: string; readonly name: string };

/** `file /etc/kube-flannel/net-conf.json`, `ConfigMap kube-system/twill-cfg, key net-conf.json`. */
export function describeNetConf(src: NetConfSource): string {
  return src.kind === 'file' ? `file ${src.path}` : `ConfigMap ${src.namespace}/${src.name}, key ${NET_CONF_KEY}`;
}

/** What both commands need in Kubernetes mode; close the client when done. */
export interface KubeCli {
  readonly client: KubeClient;
  readonly names: FlannelAnnotations;
  readonly netConf: NetConfSource;
}

/** One look at the cluster in Kubernetes mode. */
export interface KubeCluster {
  readonly nodes: readonly KubeNode[];
  readonly resourceVersion: string;
  /** The net-conf text; undefined when there is none. */
  readonly netConfText?: string;
}

/** Every Node, then the net-conf; rejects with a message naming the server (see the module comment). */
export async function readKubeCluster(kube: KubeCli, deadlineMs = KUBE_DEADLINE_MS): Promise<KubeCluster> {
  const signal = AbortSignal.timeout(deadlineMs);
  let list: NodeList;
  try {
    list = await kube.client.listNodes(signal);
  } catch (err) {
    throw new Error(describeKubeFailure(err, kube.client.server, deadlineMs), { cause: err });
  }
  const netConfText = await readNetConf(kube, signal, deadlineMs);
  return { nodes: list.items, resourceVersion: list.resourceVersion, netConfText };
}

/** The net-conf text, undefined when there is none; other failures reject with a message naming the file or the server. */
async function readNetConf(kube: KubeCli, signal: AbortSignal, deadlineMs: number): Promise<string | undefined> {
  const src = kube.netConf;
  if (src.kind === 'file') {
    try {
      return await fs.readFile(src.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read --net-config-path ${src.path}: ${(err as Error).message}`);
    }
  }
  try {
    return (await kube.client.getConfigMap(src.namespace, src.name, signal)).data[NET_CONF_KEY];
  } catch (err) {
    if (err instanceof KubeApiError && err.code === 404) return undefined;
    const message = describeKubeFailure(err, kube.client.server, deadlineMs);
    // twill's own service account may read Nodes only: inside the pod the file is mounted.
    const hint = err instanceof KubeApiError && err.code === 403 ? '; or read the mounted file instead: --net-config-path /etc/kube-flannel/net-conf.json' : '';
    throw new Error(`${message}${hint}`, { cause: err });
  }
}

/**
 * A failed read as one line naming the API server: `the Kubernetes API at
 * https://… refused to list nodes: 403 Forbidden: …`, `cannot list nodes at
 * https://…: connect ECONNREFUSED …`, or that it did not answer in time.
 */
export function describeKubeFailure(err: unknown, server: string, deadlineMs: number): string {
  if (isAbortError(err)) return `the Kubernetes API at ${server} did not answer within ${deadlineMs / 1000} s; check --kubeconfig/--kube-api-url and that it is reachable from here`;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof KubeApiError) return message.replace(/^the Kubernetes API /, `the Kubernetes API at ${server} `);
  // Connection errors name the server already; anything else gets it in front.
  return message.includes(server) ? message : `the Kubernetes API at ${server}: ${message}`;
}
