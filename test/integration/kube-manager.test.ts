/**
 * KubeSubnetManager against a real kube-apiserver on 127.0.0.1 (no network
 * namespaces): the lease from the Node's podCIDR, the annotations flanneld
 * writes, the wait for a podCIDR, and the Node watch as leases. Skips,
 * saying where it looked, when the binary is not there.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { loadAll } from 'js-yaml';
import * as os from 'os';
import * as path from 'path';
import { kubeApiserverOrSkip, KubeApiServer, startKubeApiserver } from '../harness/kube-apiserver';
import { flannelAnnotations, KubeApiError, KubeClient } from '../../lib/kube';
import { parseNetworkConfig } from '../../lib/config';
import { KubeSubnetManager, KubeSetupError } from '../../lib/subnet/kube-manager';
import { PodCidrOutsideNetworkError } from '../../lib/subnet/kube-lease';
import type { LeaseAttrs, LeaseEvent } from '../../lib/subnet/lease';
import type { Log } from '../../lib/observe/logger';
import { waitFor } from '../harness/wait';

const NET_CONF = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
const config = parseNetworkConfig(NET_CONF, ['vxlan', 'host-gw']);
const names = flannelAnnotations();
const attrs: LeaseAttrs = {
  publicIP: '198.18.0.1', publicIPv6: null, backendType: 'vxlan',
  backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
  backends: [{ type: 'vxlan', data: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' } }],
};

function memoryLog(): Log & { lines: string[] } {
  const lines: string[] = [];
  const put = (level: string) => (m: string) => lines.push(`${level}: ${m}`);
  return { lines, error: put('error'), warn: put('warn'), info: put('info'), debug: () => undefined };
}

describe('KubeSubnetManager (real kube-apiserver)', function () {
  this.timeout(60_000);
  let api: KubeApiServer | undefined;
  let starting: Promise<KubeApiServer> | undefined;
  let dir: string;
  const managers: KubeSubnetManager[] = [];

  before(async function () {
    const binary = kubeApiserverOrSkip(this);
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-kube-manager-'));
    writeFileSync(path.join(dir, 'net-conf.json'), NET_CONF);
    starting = startKubeApiserver(binary);
    api = await starting;
  });

  after(async () => {
    for (const m of managers.splice(0)) await m.close().catch(() => undefined);
    await starting?.then((s) => s.destroy(), () => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function manager(node: string, log: Log = memoryLog()): KubeSubnetManager {
    const client = new KubeClient(api!.admin.transport.config, { requestTimeoutMs: 10_000 });
    const m = new KubeSubnetManager({ client, annotations: names, identity: { nodeName: node }, netConfPath: path.join(dir, 'net-conf.json'), log, podCidrPollMs: 200 });
    managers.push(m);
    return m;
  }

  it('reads the net-conf file as the network config', async () => {
    expect((await manager('unused').readNetworkConfig())?.text).to.equal(NET_CONF);
  });

  it("takes the Node's podCIDR as its lease and writes flanneld's annotations through nodes/status, only when they differ", async () => {
    await api!.createNode('m1', { podCIDR: '10.244.1.0/24' });
    const m = manager('m1');
    const lease = await m.acquireLease(config, attrs, {});
    expect(lease.subnet.toString()).to.equal('10.244.1.0/24');
    expect(m.leaseExpiry()).to.equal(undefined);
    const node = await api!.admin.getNode('m1');
    expect(node.metadata.annotations).to.deep.include({
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
      'flannel.alpha.coreos.com/public-ip': '198.18.0.1',
      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
      'flannel.alpha.coreos.com/twill-backends': '[{"Type":"vxlan","Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}]',
    });
    // A second start with the same attributes makes no API call: the Node's version does not move.
    await manager('m1').acquireLease(config, attrs, {});
    expect((await api!.admin.getNode('m1')).metadata.resourceVersion).to.equal(node.metadata.resourceVersion);
    await m.updateLeaseAttrs({ ...attrs, publicIP: '198.18.0.9', backends: undefined });
    const after = (await api!.admin.getNode('m1')).metadata.annotations;
    expect(after['flannel.alpha.coreos.com/public-ip']).to.equal('198.18.0.9');
    expect(after).to.not.have.property('flannel.alpha.coreos.com/twill-backends');
  });

  it('waits for a podCIDR with one log line, and refuses one outside Network', async () => {
    await api!.createNode('m2');
    const log = memoryLog();
    const acquiring = manager('m2', log).acquireLease(config, attrs, {});
    await waitFor('the wait to be logged', () => log.lines.length > 0, 5000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(log.lines).to.deep.equal(['warn: waiting for Node "m2" to be assigned a podCIDR (spec.podCIDR is empty; is kube-controller-manager running with --allocate-node-cidrs?)']);
    // The podCIDR is immutable once set; the test sets it the way the node IPAM controller does.
    await api!.admin.transport.request({
      method: 'PATCH', path: '/api/v1/nodes/m2', target: { verb: 'patch', resource: 'nodes', name: 'm2' },
      body: { spec: { podCIDR: '10.244.2.0/24', podCIDRs: ['10.244.2.0/24'] } }, contentType: 'application/strategic-merge-patch+json',
    });
    expect((await acquiring).subnet.toString()).to.equal('10.244.2.0/24');

    await api!.createNode('m3', { podCIDR: '10.9.0.0/24' });
    const m3 = manager('m3');
    const err = await m3.acquireLease(config, attrs, {}).then(() => undefined, (e: unknown) => e);
    // Retried by the agent (a Node registered anew may bring another podCIDR), not a reason to exit.
    expect(err).to.be.instanceOf(PodCidrOutsideNetworkError);
    expect(m3.isSetupError(err)).to.equal(false);
    expect((err as Error).message).to.equal('subnet "10.244.0.0/16" specified in the flannel net config doesn\'t contain "10.9.0.0/24" PodCIDR of the "m3" node');
  });

  it("finds its Node through the Pod's spec.nodeName when only POD_NAME and POD_NAMESPACE are set", async () => {
    const t = api!.admin.transport;
    // No controller-manager runs here, so the namespace's default service account the Pod admission wants is made by hand.
    await t.request({ method: 'POST', path: '/api/v1/namespaces/default/serviceaccounts', target: { verb: 'create', resource: 'serviceaccounts' },
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } } }).catch(() => undefined);
    await t.request({ method: 'POST', path: '/api/v1/namespaces/default/pods', target: { verb: 'create', resource: 'pods' },
      body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'twill-abc' }, spec: { nodeName: 'm1', containers: [{ name: 'twill', image: 'twill:test' }] } } });
    const client = new KubeClient(api!.admin.transport.config, { requestTimeoutMs: 10_000 });
    const m = new KubeSubnetManager({ client, annotations: names, identity: { podName: 'twill-abc', podNamespace: 'default' }, netConfPath: path.join(dir, 'net-conf.json'), log: memoryLog() });
    managers.push(m);
    expect((await m.acquireLease(config, attrs, {})).subnet.toString()).to.equal('10.244.1.0/24');
  });

  it('says which RBAC rule is missing when the identity may read Nodes but not patch nodes/status', async () => {
    await api!.createNode('m4', { podCIDR: '10.244.4.0/24' });
    const client = new KubeClient(api!.client('restricted').transport.config, { requestTimeoutMs: 10_000 });
    const m = new KubeSubnetManager({ client, annotations: names, identity: { nodeName: 'm4' }, netConfPath: path.join(dir, 'net-conf.json'), log: memoryLog() });
    managers.push(m);
    const err = await m.acquireLease(config, attrs, {}).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubeApiError);
    expect((err as Error).message).to.match(/^the Kubernetes API refused to patch nodes\/status "m4": 403 Forbidden: .*cannot patch resource "nodes\/status".*\(RBAC: the ClusterRole bound to this identity must allow "patch" on "nodes\/status"\)/);
  });

  it('watches every Node as leases: added, skipped with one warning each, deleted', async () => {
    const m = manager('m1');
    const events: LeaseEvent[] = [];
    const warnings: string[] = [];
    const view = await m.watchLeases(config, { onEvents: (e) => events.push(...e), onWarning: (w) => warnings.push(w) });
    const subnets = () => [...view.leases().values()].map((l) => l.subnet.toString()).sort();
    expect(subnets()).to.deep.equal(['10.244.1.0/24', '10.244.2.0/24']);
    // m3's agent refused its podCIDR above, so it never wrote an annotation.
    expect(warnings).to.deep.equal([
      'skipping Node "m3": it has no annotations (no flannel-compatible agent has run on it yet)',
      'skipping Node "m4": it has no annotations (no flannel-compatible agent has run on it yet)',
    ]);
    await api!.createNode('bare', { podCIDR: '10.244.7.0/24' });
    await api!.createNode('broken', {
      podCIDR: '10.244.8.0/24',
      annotations: { [names.subnetKubeManaged]: 'true', [names.publicIP]: '198.18.0.8', [names.backendType]: 'vxlan', [names.backendData]: '{"VNI":1,' },
    });
    await waitFor('two more warnings', () => warnings.length === 4, 5000);
    expect(warnings[2]).to.equal('skipping Node "bare": it has no annotations (no flannel-compatible agent has run on it yet)');
    expect(warnings[3]).to.match(/^skipping Node "broken": its annotation flannel.alpha.coreos.com\/backend-data is not JSON/);
    // An update of a skipped Node that leaves it broken is not warned about again.
    await api!.admin.patchNodeMetadata('broken', { labels: { touched: 'yes' } });
    await api!.admin.patchNodeStatus('broken', { metadata: { annotations: { [names.backendData]: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:48"}' } } });
    await waitFor('the fixed Node to become a lease', () => subnets().includes('10.244.8.0/24'), 5000);
    expect(warnings).to.have.length(4);
    await api!.deleteNode('m2');
    await waitFor('the deleted Node\'s lease to go', () => !subnets().includes('10.244.2.0/24'), 5000);
    expect(events.filter((e) => e.type === 'removed').map((e) => e.lease.subnet.toString())).to.deep.equal(['10.244.2.0/24']);
    await view.stop();
  });

  it("lets an identity bound to the manifest's ClusterRole (besides reading Nodes) find its Pod, acquire, publish and watch (manifests/kubernetes/twill-kube.yaml)", async () => {
    const docs = loadAll(readFileSync(path.join(__dirname, '../../../manifests/kubernetes/twill-kube.yaml'), 'utf8')) as { kind?: string; rules?: unknown }[];
    const rules = docs.find((d) => d?.kind === 'ClusterRole')?.rules;
    const t = api!.admin.transport;
    await t.request({ method: 'POST', path: '/apis/rbac.authorization.k8s.io/v1/clusterroles', target: { verb: 'create', resource: 'clusterroles' },
      body: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'twill-manifest' }, rules } });
    // The certificate identity (CN twill-node) gets the manifest's role alone on top of reading Nodes, which it holds already.
    await t.request({ method: 'POST', path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', target: { verb: 'create', resource: 'clusterrolebindings' },
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'twill-manifest' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'twill-manifest' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'twill-node' }],
      } });
    const client = new KubeClient(api!.client('cert').transport.config, { requestTimeoutMs: 10_000 });
    const m = new KubeSubnetManager({ client, annotations: names, identity: { podName: 'twill-abc', podNamespace: 'default' }, netConfPath: path.join(dir, 'net-conf.json'), log: memoryLog() });
    managers.push(m);
    // RBAC learns of the binding through its own watch: the first attempts may still be refused.
    const lease = await waitFor('the manifest role to take effect', () => m.acquireLease(config, { ...attrs, publicIP: '198.18.0.11' }, {}).catch(() => undefined), 10_000, 200);
    expect(lease?.subnet.toString()).to.equal('10.244.1.0/24');
    expect((await api!.admin.getNode('m1')).metadata.annotations[names.publicIP]).to.equal('198.18.0.11');
    const view = await m.watchLeases(config, { onEvents: () => undefined, onWarning: () => undefined });
    expect(view.leases().size).to.be.greaterThan(0);
    await view.stop();
  });

  it('writes back annotations someone removes from its own Node, and takes a new podCIDR after its Node is registered again', async () => {
    await api!.createNode('m5', { podCIDR: '10.244.5.0/24' });
    const log = memoryLog();
    const changed: string[] = [];
    const client = new KubeClient(api!.admin.transport.config, { requestTimeoutMs: 10_000 });
    const m = new KubeSubnetManager({
      client, annotations: names, identity: { nodeName: 'm5' }, netConfPath: path.join(dir, 'net-conf.json'), log, setNodeNetworkUnavailable: true,
      onOwnLeaseChanged: (lease, previous) => changed.push(`${previous.subnet.toString()} -> ${lease.subnet.toString()}`),
    });
    managers.push(m);
    await m.acquireLease(config, attrs, {});
    const view = await m.watchLeases(config, { onEvents: () => undefined, onWarning: () => undefined });
    try {
      // Running: the NetworkUnavailable condition is False, as flanneld's CompleteLease sets it.
      expect((await api!.admin.getNode('m5')).status.conditions.find((c) => c.type === 'NetworkUnavailable'))
        .to.include({ status: 'False', reason: 'FlannelIsUp' });
      await api!.admin.patchNodeStatus('m5', { metadata: { annotations: { [names.publicIP]: null, [names.subnetKubeManaged]: null } } });
      await waitFor('the annotations to be written back', async () => (await api!.admin.getNode('m5')).metadata.annotations[names.subnetKubeManaged] === 'true', 5000, 100);
      expect((await api!.admin.getNode('m5')).metadata.annotations[names.publicIP]).to.equal('198.18.0.1');
      expect(log.lines.filter((l) => l.includes('writing them back'))).to.have.length(1);

      await api!.deleteNode('m5');
      await waitFor('the deletion to be noticed', () => log.lines.some((l) => l.includes('Node "m5" is gone from the API')), 5000, 50);
      await api!.createNode('m5', { podCIDR: '10.244.15.0/24' });
      await waitFor('the new podCIDR to be taken, and the annotations published on the new Node', async () =>
        (await api!.admin.getNode('m5')).metadata.annotations[names.subnetKubeManaged] === 'true', 5000, 100);
      expect(changed).to.deep.equal(['10.244.5.0/24 -> 10.244.15.0/24']);
      expect(m.ownLease()?.subnet.toString()).to.equal('10.244.15.0/24');
    } finally {
      await view.stop();
    }
  });
});
