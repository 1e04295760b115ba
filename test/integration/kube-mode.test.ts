/**
 * twilld with --kube-subnet-mgr: a real kube-apiserver (RBAC on, its own
 * etcd) listening on the underlay bridge, one Node object per node with a
 * podCIDR, agents in node namespaces with NODE_NAME and a net-conf file.
 * What a user sees: pods on different nodes reach each other, the Nodes
 * carry flanneld's annotations, a Node added later joins, a deleted one
 * leaves no route behind, a Node waiting for its podCIDR says so once, a
 * changed net-conf migrates vxlan → host-gw without losing a probe, and
 * Nodes with broken annotations are skipped with one warning each.
 * Skips, saying where it looked, when the kube-apiserver binary is absent.
 */
import { expect } from 'chai';
import { findKubeApiserver } from '../harness/kube-apiserver';
import { TwillCluster } from '../harness/twill-cluster';
import { allPodsPing } from '../harness/checks';
import { Probes, hasFootprint, type ProbeReport } from '../harness/migration';
import { waitFor, sleep } from '../harness/wait';
import { flannelAnnotations, type KubeNode } from '../../lib/kube';

const names = flannelAnnotations();
const RUNNING = [0, 1, 2];
const LATE = 3;
const NETWORK = '10.244.0.0/16';

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('twilld --kube-subnet-mgr: 3 nodes, Nodes in a real kube-apiserver', function () {
  this.timeout(60_000);
  let tc: TwillCluster | undefined;

  before(async function () {
    this.timeout(90_000);
    const found = findKubeApiserver();
    if (!found.binary) {
      console.log(`      skipped: no kube-apiserver binary (looked at ${found.looked.join(' and ')})`);
      this.skip();
    }
    // Node 3's Node object is made later, by the test that adds it.
    tc = await TwillCluster.create({
      nodes: 4,
      config: { Network: NETWORK, Backend: { Type: 'vxlan' } },
      kube: { binary: found.binary, nodes: new Map(RUNNING.map((i) => [i, `10.244.${i + 1}.0/24`])) },
      agentArgs: ['--repair-interval', '2'],
      start: false,
    });
    for (const i of RUNNING) await tc.startAgent(i);
    for (const i of RUNNING) await tc.addPod(i);
  });

  after(async () => {
    await tc?.destroy();
  });

  const cluster = (): TwillCluster => {
    if (!tc) throw new Error('the cluster did not start');
    return tc;
  };
  const node = (i: number): Promise<KubeNode> => cluster().kube!.admin.getNode(cluster().kubeNodeName(i));

  it("takes each Node's podCIDR as its subnet, and every pod pings every pod on vxlan", async () => {
    for (const i of RUNNING) expect(cluster().lease(i).subnet).to.equal(`10.244.${i + 1}.0/24`);
    expect(await allPodsPing(cluster(), RUNNING)).to.deep.equal([]);
  });

  it("writes flanneld's annotation names and JSON shapes on each Node", async () => {
    for (const i of RUNNING) {
      const a = (await node(i)).metadata.annotations;
      const mac = (await cluster().net.ip(i, ['-o', 'link', 'show', 'flannel.1'])).match(/link\/ether ([0-9a-f:]{17})/)?.[1];
      expect(a[names.backendType], `node ${i}`).to.equal('vxlan');
      // The exact text flanneld writes: Go's json of {VNI, VtepMAC}, in that order.
      expect(a[names.backendData], `node ${i}`).to.equal(`{"VNI":1,"VtepMAC":"${mac}"}`);
      expect(a[names.publicIP], `node ${i}`).to.equal(cluster().net.nodeIp(i));
      expect(a[names.subnetKubeManaged], `node ${i}`).to.equal('true');
      expect(a, `node ${i}: no migration, so no list of backends`).to.not.have.property(names.twillBackends);
    }
  });

  it('skips a Node with no annotations and one with malformed backend-data with one warning each, and nothing crashes', async () => {
    const api = cluster().kube!;
    await api.createNode('bare', { podCIDR: '10.244.60.0/24' });
    await api.createNode('broken', {
      podCIDR: '10.244.61.0/24',
      annotations: { [names.subnetKubeManaged]: 'true', [names.publicIP]: '198.18.0.60', [names.backendType]: 'vxlan', [names.backendData]: '{"VNI":1,"VtepMAC":' },
    });
    // Kubelets update their Node every few seconds: updates that leave it broken must not repeat the warning.
    for (let k = 0; k < 3; k++) {
      await api.admin.patchNodeMetadata('bare', { labels: { beat: String(k) } });
      await api.admin.patchNodeMetadata('broken', { labels: { beat: String(k) } });
    }
    await waitFor('every agent to warn about both', () => RUNNING.every((i) => cluster().logs(i).includes('skipping Node "broken"') && cluster().logs(i).includes('skipping Node "bare"')), 10_000);
    await sleep(500);
    for (const i of RUNNING) {
      const logs = cluster().logs(i);
      expect(count(logs, 'skipping Node "bare": it has no annotations'), `node ${i}:\n${logs}`).to.equal(1);
      expect(count(logs, `skipping Node "broken": its annotation ${names.backendData} is not JSON`), `node ${i}:\n${logs}`).to.equal(1);
      expect(cluster().agents.get(i)?.exitedWith, `node ${i}`).to.equal(null);
      expect((await cluster().net.ip(i, ['route', 'show', '10.244.60.0/24'])).trim(), `node ${i}: route to the bare Node`).to.equal('');
      expect((await cluster().net.ip(i, ['route', 'show', '10.244.61.0/24'])).trim(), `node ${i}: route to the broken Node`).to.equal('');
    }
    await api.deleteNode('bare');
    await api.deleteNode('broken');
    expect(await allPodsPing(cluster(), RUNNING)).to.deep.equal([]);
  });

  it('migrates vxlan → host-gw live when the net-conf file changes, with 0 lost probes', async () => {
    const probes = await Probes.start(cluster(), 100, RUNNING);
    let report: ProbeReport | undefined;
    try {
      await sleep(500);
      const written = Date.now();
      cluster().writeNetConf({ Network: NETWORK, Backend: { Type: 'host-gw' } });
      await waitFor('every Node on host-gw alone, with nothing of vxlan left', async () => {
        for (const i of RUNNING) {
          const a = (await node(i)).metadata.annotations;
          if (a[names.backendType] !== 'host-gw' || a[names.twillBackends] !== undefined) return false;
          if ((await hasFootprint(cluster(), i, 'vxlan')).length) return false;
        }
        return true;
      }, 40_000, 250);
      const convergedMs = Date.now() - written;
      await sleep(1000);
      report = await probes.stop();
      console.log(`      vxlan -> host-gw through the net-conf file: ${report.sent} probes, ${report.lost} lost, longest reply gap ${Math.round(report.maxGapMs)} ms; converged ${convergedMs} ms after the write`);
      expect(report.lost, report.lines.join('\n')).to.equal(0);
    } finally {
      if (!report) await probes.stop().catch(() => undefined);
    }
    for (const i of RUNNING) {
      // Each agent's own patches during the migration are not mistaken for someone else's edits.
      expect(cluster().logs(i), `node ${i}`).to.not.include('writing them back');
      expect((await node(i)).metadata.annotations[names.backendData], `node ${i}`).to.equal('null');
      expect((await hasFootprint(cluster(), i, 'host-gw')).length, `node ${i} runs host-gw`).to.be.greaterThan(0);
    }
  });

  it('a Node added later waits for its podCIDR with one log line, then joins: every pod reaches its pod', async () => {
    const api = cluster().kube!;
    const name = cluster().kubeNodeName(LATE);
    await api.createNode(name);
    const agent = await cluster().startAgent(LATE, [], { waitRunning: false });
    const waiting = `waiting for Node "${name}" to be assigned a podCIDR`;
    await waitFor('the agent to say it waits for a podCIDR', () => cluster().logs(LATE).includes(waiting), 15_000);
    await sleep(3000);
    expect(count(cluster().logs(LATE), waiting), cluster().logs(LATE)).to.equal(1);
    expect(agent.exitedWith).to.equal(null);
    // What the node IPAM controller does: podCIDR is set once, on the Node itself.
    await api.admin.transport.request({
      method: 'PATCH', path: `/api/v1/nodes/${name}`, target: { verb: 'patch', resource: 'nodes', name },
      body: { spec: { podCIDR: '10.244.4.0/24', podCIDRs: ['10.244.4.0/24'] } }, contentType: 'application/strategic-merge-patch+json',
    });
    await waitFor('the late agent to run', () => cluster().logs(LATE).includes('twilld running'), 15_000);
    expect(cluster().lease(LATE).subnet).to.equal('10.244.4.0/24');
    await cluster().addPod(LATE);
    await waitFor('every pod to reach the late pod and back', async () => (await allPodsPing(cluster(), [...RUNNING, LATE])).length === 0, 15_000, 500);
  });

  it("a deleted Node's routes are gone from every other node", async () => {
    const name = cluster().kubeNodeName(LATE);
    await cluster().stopAgent(LATE);
    for (const i of RUNNING) expect((await cluster().net.ip(i, ['route', 'show', '10.244.4.0/24'])).trim(), `node ${i} before`).to.not.equal('');
    await cluster().kube!.deleteNode(name);
    await waitFor('every node to drop the route to 10.244.4.0/24', async () => {
      for (const i of RUNNING) if ((await cluster().net.ip(i, ['route', 'show', '10.244.4.0/24'])).trim() !== '') return false;
      return true;
    }, 10_000, 200);
    expect(await allPodsPing(cluster(), RUNNING)).to.deep.equal([]);
  });
});
