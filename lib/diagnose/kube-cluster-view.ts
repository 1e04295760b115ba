/**
 * The cluster as the Kubernetes API holds it (twilld --kube-subnet-mgr),
 * read once, as cluster-view.ts reads etcd: every Node and the network
 * config (a net-conf.json file or the ConfigMap key). Everything that goes
 * wrong becomes a finding — the API out of reach or refusing us (FAIL,
 * naming the server), no or a bad config (FAIL), a Node the agents skip
 * (WARN with their reason) — and the view is undefined when there is
 * nothing to diagnose the leases against. Which Nodes are peers is the
 * agents' own rule (`filterNodes`).
 */
import { describeNetworks } from './mtu';
import { parseNetworkConfig, type NetworkConfig } from '../config';
import { filterNodes } from '../subnet/kube-lease';
import { KNOWN_BACKEND_TYPES, backendFactory, BackendUnavailableError } from '../../backends';
import { describeNetConf, readKubeCluster, type KubeCli, type KubeCluster } from '../kube/cluster-read';
import type { ClusterView } from './cluster-view';
import type { Findings } from './findings';

export async function readKubeClusterView(kube: KubeCli, out: Findings): Promise<ClusterView | undefined> {
  const server = kube.client.server;
  const where = describeNetConf(kube.netConf);
  let read: KubeCluster;
  try {
    read = await readKubeCluster(kube);
  } catch (err) {
    out.fail('kube', `cannot read the cluster: ${(err as Error).message}`,
      'give the --kubeconfig (or --kube-subnet-mgr inside the twill pod) and --kube-api-url twilld uses; the identity needs get/list on nodes (and get on the ConfigMap, or pass --net-config-path); check with `kubectl get nodes`');
    return undefined;
  }
  out.ok('kube', `the Kubernetes API at ${server} lists ${read.nodes.length} Node(s)`);
  if (read.netConfText === undefined) {
    out.fail('config', `there is no network config: no ${where}`,
      kube.netConf.kind === 'file' ? 'give the --net-config-path twilld reads' : 'create it (manifests/kubernetes/twill-kube.yaml), or give --kube-net-conf <namespace>/<name> or --net-config-path');
    return undefined;
  }
  let config: NetworkConfig;
  try {
    config = parseNetworkConfig(read.netConfText, KNOWN_BACKEND_TYPES);
    backendFactory(config.backend.type).validate(config.backend);
  } catch (err) {
    const unavailable = err instanceof BackendUnavailableError;
    out.fail('config', `the network config in the ${where} cannot be used: ${(err as Error).message}`,
      unavailable ? 'choose a backend this build has' : `fix it in the ${where}; twilld keeps running the last good config meanwhile`);
    return undefined;
  }
  const backend = config.backend;
  const settings = Object.keys(backend.settings).filter((k) => k.toLowerCase() !== 'type');
  out.ok('config', `${describeNetworks(config)}, backend ${backend.type}` +
    (settings.length ? ` (${settings.map((k) => `${k}=${JSON.stringify(backend.settings[k])}`).join(', ')})` : '') + ` (from the ${where})`);
  for (const w of config.warnings) out.warn('config', w, `remove or correct it in the ${where}`);

  const verdicts = filterNodes(read.nodes, kube.names, config);
  const nodeOf = new Map<string, string>();
  for (const v of verdicts) {
    if (v.lease) nodeOf.set(v.lease.key, v.node.metadata.name);
    else {
      out.warn('lease', `Node ${JSON.stringify(v.node.metadata.name.slice(0, 80))} is not a peer: ${v.skip.reason}; every agent skips it`,
        'if twill should run there, check its twill pod (kubectl -n kube-system logs) and the Node\'s podCIDR and annotations (kubectl get node -o yaml)');
    }
  }
  return { config, leases: verdicts.flatMap((v) => (v.lease ? [v.lease] : [])), nodeOf };
}
