/**
 * One look at the cluster in Kubernetes mode: every Node (one list), then
 * the net-conf, then — when asked — each node's readiness, as snapshot.ts
 * does for etcd. Failure: the API part is bounded as a whole
 * (kube-options.ts `readKubeCluster`); past the deadline, or when the API
 * server refuses, it rejects with a message naming the server.
 */
import { describeNetConf, readKubeCluster, type KubeCli } from '../../kube/cluster-read';
import { buildKubeClusterStatus, type KubeStatusInput } from './kube-model';
import type { ClusterStatus } from './model';
import { probeReadiness } from './health';
import { typeOfKey } from '../../../backends/instance';

export interface KubeSnapshotOptions {
  /** Probe `http://<PublicIP>:<port>/readyz` of every Node the agents take as a peer. */
  readonly healthPort?: number;
}

export async function readKubeSnapshot(kube: KubeCli, opts: KubeSnapshotOptions): Promise<ClusterStatus> {
  const read = await readKubeCluster(kube);
  const input: KubeStatusInput = {
    server: kube.client.server,
    resourceVersion: read.resourceVersion,
    readAt: new Date(),
    netConf: describeNetConf(kube.netConf),
    configText: read.netConfText,
    nodes: read.nodes,
    names: kube.names,
  };
  const status = buildKubeClusterStatus(input);
  if (opts.healthPort === undefined) return status;
  const targets = status.rows.flatMap((r) => (r.lease ? [{ key: r.key, publicIP: r.lease.attrs.publicIP, bgp: r.terminates.some((k) => typeOfKey(k) === 'bgp') }] : []));
  return buildKubeClusterStatus({ ...input, health: await probeReadiness(targets, opts.healthPort) });
}
