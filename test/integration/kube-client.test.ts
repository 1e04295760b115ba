/**
 * lib/kube's client against a real kube-apiserver (v1.26, RBAC on) with its
 * own etcd: one server for the whole file (test/harness/kube-apiserver.ts).
 * Skips, saying where it looked, when the binary is not there.
 */
import { expect } from 'chai';
import { kubeApiserverOrSkip, KubeApiServer, startKubeApiserver } from '../harness/kube-apiserver';
import { GoneError, KubeApiError, KubeClient, KubeNode, NodeWatchEvent } from '../../lib/kube';
import { waitFor } from '../harness/wait';
import { flannelAnnotations } from '../../lib/kube';
import { parseNetworkConfig } from '../../lib/config';
import { KubeLeaseWatcher } from '../../lib/subnet/kube-lease-watcher';
import { Backoff } from '../../lib/subnet/backoff';

/** What a flannel-compatible agent writes on its Node (vxlan). */
function nodeAnnotations(publicIP: string): Record<string, string> {
  const names = flannelAnnotations();
  return {
    [names.subnetKubeManaged]: 'true', [names.publicIP]: publicIP, [names.backendType]: 'vxlan',
    [names.backendData]: JSON.stringify({ VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' }),
  };
}

const PREFIX = 'flannel.alpha.coreos.com';

describe('Kubernetes API client (real kube-apiserver)', function () {
  this.timeout(60_000);
  let api: KubeApiServer | undefined;
  let starting: Promise<KubeApiServer> | undefined;
  const created = new Set<string>();

  before(async function () {
    const binary = kubeApiserverOrSkip(this);
    // Without the watch cache for Nodes, an etcd compaction makes an old resourceVersion fail at once (see GoneError below).
    starting = startKubeApiserver(binary, { nodeWatchCache: false });
    api = await starting;
  });

  after(async () => {
    // Also when start-up outlived the hook's timeout: its processes must still be stopped.
    await starting?.then((s) => s.destroy(), () => undefined);
  });

  afterEach(async () => {
    for (const name of [...created]) {
      await api?.deleteNode(name).catch(() => undefined);
      created.delete(name);
    }
  });

  const server = (): KubeApiServer => {
    if (!api) throw new Error('kube-apiserver did not start');
    return api;
  };

  async function createNode(name: string, spec: Parameters<KubeApiServer['createNode']>[1]): Promise<KubeNode> {
    const n = await server().createNode(name, spec);
    created.add(name);
    return n;
  }

  it('lists Nodes with their podCIDR(s) and a resourceVersion to watch from', async () => {
    await createNode('list-a', { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] });
    await createNode('list-b', { podCIDR: '10.244.2.0/24', podCIDRs: ['10.244.2.0/24', 'fd00:0:0:2::/64'] });
    const list = await server().admin.listNodes();
    expect(list.resourceVersion).to.match(/^\d+$/);
    const byName = new Map(list.items.map((n) => [n.metadata.name, n]));
    expect(byName.get('list-a')?.spec).to.deep.equal({ podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] });
    expect(byName.get('list-b')?.spec.podCIDRs).to.deep.equal(['10.244.2.0/24', 'fd00:0:0:2::/64']);
  });

  it('pages through a list when there are more Nodes than one page holds', async () => {
    for (let i = 0; i < 5; i++) await createNode(`page-${i}`, { podCIDR: `10.244.${10 + i}.0/24` });
    const small = new KubeClient(server().admin.transport.config, { listPageSize: 2 });
    try {
      const list = await small.listNodes();
      expect(list.items.map((n) => n.metadata.name).filter((n) => n.startsWith('page-')).sort()).to.deep.equal(['page-0', 'page-1', 'page-2', 'page-3', 'page-4']);
    } finally {
      small.close();
    }
  });

  it('gets one Node by name, and a missing one is a 404 KubeApiError naming it', async () => {
    await createNode('get-a', { podCIDR: '10.244.3.0/24' });
    const n = await server().admin.getNode('get-a');
    expect(n.spec.podCIDR).to.equal('10.244.3.0/24');
    const err = await server().admin.getNode('no-such-node').then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubeApiError);
    expect((err as KubeApiError).code).to.equal(404);
    expect((err as Error).message).to.include('get nodes "no-such-node"').and.include('not found');
  });

  it('watches ADDED, MODIFIED and DELETED from a list\'s resourceVersion', async () => {
    const { resourceVersion } = await server().admin.listNodes();
    const events: NodeWatchEvent[] = [];
    const stop = new AbortController();
    const watching = server().admin.watchNodes(resourceVersion, (e) => events.push(e), stop.signal);
    try {
      await createNode('watch-a', { podCIDR: '10.244.4.0/24' });
      await createNode('watch-b', { podCIDR: '10.244.5.0/24' });
      await server().admin.patchNodeStatus('watch-a', { metadata: { annotations: { [`${PREFIX}/backend-type`]: 'vxlan' } } });
      await server().deleteNode('watch-b');
      created.delete('watch-b');
      const seen = (): string[] => events.flatMap((e) => (e.type === 'BOOKMARK' ? [] : [`${e.type} ${e.node.metadata.name}`]));
      await waitFor('the four events', () => seen().length >= 4, 10_000);
      expect(seen()).to.deep.equal(['ADDED watch-a', 'ADDED watch-b', 'MODIFIED watch-a', 'DELETED watch-b']);
      const modified = events.find((e) => e.type === 'MODIFIED');
      expect(modified?.type === 'MODIFIED' && modified.node.metadata.annotations[`${PREFIX}/backend-type`]).to.equal('vxlan');
    } finally {
      stop.abort();
    }
    const end = await watching;
    expect(end.reason).to.equal('aborted');
    expect(Number(end.resourceVersion)).to.be.greaterThan(Number(resourceVersion));
  });

  it('rejects a watch from a resourceVersion older than the server holds with GoneError', async () => {
    // What a resourceVersion kept across a long outage meets: the history it
    // points into has been compacted away (the API server compacts etcd every
    // 5 minutes; here the test does it at once).
    const admin = server().admin;
    const { resourceVersion: old } = await admin.listNodes();
    await createNode('gone-a', { podCIDR: '10.244.9.0/24' });
    await server().deleteNode('gone-a');
    created.delete('gone-a');
    const { resourceVersion: now } = await admin.listNodes();
    await server().etcd.client().kv.compact({ revision: now, physical: true });

    const stop = new AbortController();
    const events: NodeWatchEvent[] = [];
    const err = await admin.watchNodes(old, (e) => events.push(e), stop.signal).then(() => undefined, (e: unknown) => e);
    stop.abort();
    expect(err).to.be.instanceOf(GoneError);
    expect((err as GoneError).code).to.equal(410);
    expect((err as Error).message).to.include('watch nodes');
    expect(events).to.deep.equal([]);
    // From the fresh list's resourceVersion the watch is accepted.
    const again = new AbortController();
    const watching = admin.watchNodes(now, () => undefined, again.signal);
    await new Promise((r) => setTimeout(r, 300));
    again.abort();
    expect((await watching).reason).to.equal('aborted');
  });

  it('KubeLeaseWatcher (the Node watch as leases) lists again once when its watch comes back 410 Gone, then follows Nodes as before', async () => {
    await createNode('relist-a', { podCIDR: '10.244.11.0/24', annotations: nodeAnnotations('198.18.0.11') });
    // The server ends each watch after 2 s; the watcher opens the next from the last resourceVersion it saw.
    const client = new KubeClient(server().admin.transport.config, { watchTimeoutSeconds: 2 });
    const resyncs: string[] = [];
    const warnings: string[] = [];
    const watcher = new KubeLeaseWatcher(client, flannelAnnotations(), parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}', ['vxlan']),
      { onEvents: () => undefined, onWarning: (w) => warnings.push(w), onResync: (reason) => resyncs.push(reason) }, new Backoff(50, 500));
    try {
      await watcher.start();
      expect(resyncs).to.deep.equal(['start-up']);
      // History the watcher has not seen moves on (a write outside the API's keys) and is compacted away: its resourceVersion is now too old.
      const etcd = server().etcd.client();
      // Two writes: the API server watches from resourceVersion + 1, which must itself be gone.
      await etcd.put('/twill-test/bump').value('1').exec();
      const bumped = await etcd.put('/twill-test/bump').value('2').exec();
      await etcd.kv.compact({ revision: bumped.header.revision, physical: true });
      await waitFor('a re-list after the 410', () => resyncs.length === 2, 10_000, 50);
      expect(resyncs[1]).to.equal('the watch fell too far behind (410 Gone)');
      await createNode('relist-b', { podCIDR: '10.244.12.0/24', annotations: nodeAnnotations('198.18.0.12') });
      const subnets = () => [...watcher.leases().values()].map((l) => l.subnet.toString()).sort();
      await waitFor('the Node created after the re-list', () => subnets().includes('10.244.12.0/24'), 5000, 50);
      expect(subnets()).to.deep.equal(['10.244.11.0/24', '10.244.12.0/24']);
      expect(resyncs, 'one re-list, not one per watch').to.have.length(2);
      expect(warnings).to.deep.equal([]);
    } finally {
      await watcher.stop();
    }
  });

  it('patches annotations through nodes/status as flanneld does, reads them back, and removes one with null', async () => {
    await createNode('patch-a', { podCIDR: '10.244.6.0/24' });
    const admin = server().admin;
    const patched = await admin.patchNodeStatus('patch-a', {
      metadata: {
        annotations: {
          [`${PREFIX}/backend-type`]: 'vxlan',
          [`${PREFIX}/backend-data`]: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
          [`${PREFIX}/public-ip`]: '198.18.0.3',
          [`${PREFIX}/kube-subnet-manager`]: 'true',
        },
      },
    });
    expect(patched.metadata.annotations[`${PREFIX}/public-ip`]).to.equal('198.18.0.3');
    const read = await admin.getNode('patch-a');
    expect(read.metadata.annotations).to.include({
      [`${PREFIX}/backend-type`]: 'vxlan',
      [`${PREFIX}/backend-data`]: '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
      [`${PREFIX}/kube-subnet-manager`]: 'true',
    });
    // The podCIDR is spec: a status patch cannot have changed it.
    expect(read.spec.podCIDR).to.equal('10.244.6.0/24');

    await admin.patchNodeMetadata('patch-a', { annotations: { [`${PREFIX}/public-ip`]: null, 'example.com/x': 'y' } }, 'merge');
    const after = await admin.getNode('patch-a');
    expect(after.metadata.annotations).to.not.have.property(`${PREFIX}/public-ip`);
    expect(after.metadata.annotations).to.include({ 'example.com/x': 'y', [`${PREFIX}/backend-type`]: 'vxlan' });
  });

  it('gives a restricted identity a KubeApiError that names the verb and the resource it lacks', async () => {
    await createNode('rbac-a', { podCIDR: '10.244.7.0/24' });
    const restricted = server().client('restricted');
    // It may read...
    expect((await restricted.getNode('rbac-a')).metadata.name).to.equal('rbac-a');
    // ...but not patch.
    const err = await restricted.patchNodeStatus('rbac-a', { metadata: { annotations: { a: 'b' } } }).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubeApiError);
    const e = err as KubeApiError;
    expect(e.code).to.equal(403);
    expect(e.target).to.deep.equal({ verb: 'patch', resource: 'nodes/status', name: 'rbac-a' });
    expect(e.message).to.include('forbidden').and.include('cannot patch resource "nodes/status"').and.include('twill-restricted');
    expect(e.message).to.include('ClusterRole');
  });

  it('authenticates with the client certificate a kubeconfig names', async () => {
    await createNode('cert-a', { podCIDR: '10.244.8.0/24' });
    const byCert = server().client('cert');
    expect((await byCert.getNode('cert-a')).spec.podCIDR).to.equal('10.244.8.0/24');
    const err = await byCert.patchNodeMetadata('cert-a', { labels: { a: 'b' } }).then(() => undefined, (e: unknown) => e);
    expect((err as Error).message).to.include('User "twill-node" cannot patch resource "nodes"');
  });
});
