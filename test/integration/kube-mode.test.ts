/**
 * twilld with --kube-subnet-mgr: a real kube-apiserver (RBAC on, its own
 * etcd) listening on the underlay bridge, one Node object per node with a
 * podCIDR, agents in node namespaces with NODE_NAME and a net-conf file.
 * What a user sees: pods on different nodes reach each other, the Nodes
 * carry flanneld's annotations, a Node added later joins, a deleted one
 * leaves no route behind, a Node waiting for its podCIDR says so once, a
 * changed net-conf migrates vxlan → host-gw without losing a probe, and
 * Nodes with broken annotations are skipped with one warning each; and
 * `twill status` / `twill diagnose` read the same cluster from the API.
 * Skips, saying where it looked, when the kube-apiserver binary is absent.
 */
import { expect } from 'chai';
import { readFileSync } from 'fs';
import { createServer, type Server } from 'net';
import { spawn } from 'child_process';
import * as path from 'path';
import { kubeApiserverOrSkip } from '../harness/kube-apiserver';
import { TwillCluster } from '../harness/twill-cluster';
import { allPodsPing } from '../harness/checks';
import { Probes, hasFootprint, type ProbeReport } from '../harness/migration';
import { waitFor, sleep } from '../harness/wait';
import { flannelAnnotations, type KubeNode } from '../../lib/kube';
import { runCli, linesMatching } from '../harness/diagnose';
import type { StatusDocument } from '../../lib/cli/status/json';

const names = flannelAnnotations();
const RUNNING = [0, 1, 2];
const LATE = 3;
const NETWORK = '10.244.0.0/16';
const TWILL = path.join(__dirname, '..', '..', 'cmd', 'twill.js');

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('twilld --kube-subnet-mgr: 3 nodes, Nodes in a real kube-apiserver', function () {
  this.timeout(60_000);
  let tc: TwillCluster | undefined;

  before(async function () {
    this.timeout(90_000);
    const binary = kubeApiserverOrSkip(this);
    // Node 3's Node object is made later, by the test that adds it.
    tc = await TwillCluster.create({
      nodes: 4,
      config: { Network: NETWORK, Backend: { Type: 'vxlan' } },
      kube: { binary, nodes: new Map(RUNNING.map((i) => [i, `10.244.${i + 1}.0/24`])) },
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

  // twill status / twill diagnose, while all nodes run vxlan (mocha runs a
  // nested describe after these tests, by then on host-gw: hence plain its).
  const NO_AGENT = 'no-agent';
  let cliSetup: Promise<string> | undefined;
  /** Once: the ConfigMap twill-kube.yaml installs and a Node no agent runs on; resolves to the admin kubeconfig. */
  const forCli = (): Promise<string> => (cliSetup ??= (async () => {
    const api = cluster().kube!;
    // What twill-kube.yaml installs: the net-conf in kube-system/twill-cfg.
    const t = api.admin.transport;
    await t.request({
      method: 'POST', path: '/api/v1/namespaces', target: { verb: 'create', resource: 'namespaces' },
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system' } },
    }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err; // the API server made it already
    });
    await t.request({
      method: 'POST', path: '/api/v1/namespaces/kube-system/configmaps', target: { verb: 'create', resource: 'configmaps' },
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'twill-cfg' }, data: { 'net-conf.json': readFileSync(cluster().netConfPath, 'utf8') } },
    });
    // A Node no agent has run on: not a peer, and status says why.
    await api.createNode(NO_AGENT, { podCIDR: '10.244.70.0/24' });
    return api.adminKubeconfig;
  })());

  it('status lists every Node with its subnet, public IP, backend and VIA, and a skipped Node with the reason', async () => {
    const kubeconfig = await forCli();
    const r = await runCli(['status', '--kubeconfig', kubeconfig]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.include('Network config (ConfigMap kube-system/twill-cfg, key net-conf.json)');
    expect(r.stdout).to.include(`Leases: 4 Nodes (1 invalid) at ${cluster().kube!.url}`);
    const rows = r.stdout.split('\n').map((l) => l.split(/\s{2,}/));
    expect(rows.find((c) => c[0] === 'NODE'), r.stdout).to.deep.equal(['NODE', 'SUBNET', 'PUBLIC IP', 'BACKENDS', 'VIA', 'VTEP MAC', 'PROBLEM']);
    for (const i of RUNNING) {
      const row = rows.find((c) => c[0] === cluster().kubeNodeName(i));
      expect(row?.slice(0, 5), r.stdout).to.deep.equal([cluster().kubeNodeName(i), `10.244.${i + 1}.0/24`, cluster().net.nodeIp(i), 'vxlan', 'vxlan×2']);
    }
    expect(rows.find((c) => c[0] === NO_AGENT), r.stdout).to.deep.equal([NO_AGENT, '10.244.70.0/24', '-', '-', '-', '-', 'INVALID: it has no annotations (no flannel-compatible agent has run on it yet)']);
  });

  it('status --json (net-conf from a file) names the API server and each lease\'s Node, with VIA per peer', async () => {
    const kubeconfig = await forCli();
    const r = await runCli(['status', '--kubeconfig', kubeconfig, '--net-config-path', cluster().netConfPath, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const doc = JSON.parse(r.stdout) as StatusDocument;
    expect(doc.etcd).to.equal(undefined);
    expect(doc.kube?.server).to.equal(cluster().kube!.url);
    expect(doc.kube?.resourceVersion).to.match(/^\d+$/);
    expect(doc.kube?.netConf).to.equal(`file ${cluster().netConfPath}`);
    expect(doc.config).to.include({ state: 'valid', network: NETWORK });
    const n0 = doc.leases.find((l) => l.node === cluster().kubeNodeName(0));
    expect(n0).to.include({ valid: true, subnet: '10.244.1.0/24', publicIP: cluster().net.nodeIp(0), backendType: 'vxlan', expirySeconds: null });
    expect(n0?.peers).to.deep.equal([
      { subnet: '10.244.2.0/24', backend: 'vxlan', encrypted: false },
      { subnet: '10.244.3.0/24', backend: 'vxlan', encrypted: false },
    ]);
    expect(doc.leases.find((l) => l.node === NO_AGENT)).to.include({ valid: false, invalidReason: 'it has no annotations (no flannel-compatible agent has run on it yet)' });
  });

  it('diagnose on node 0 names its Node, warns about the skipped one, finds no FAIL and an OK per peer', async () => {
    const kubeconfig = await forCli();
    const r = await runCli(['diagnose', '--kubeconfig', kubeconfig, '--iface', 'eth0', '--subnet-file', cluster().subnetFile(0)], cluster().nodeNs(0));
    expect(linesMatching(r.stdout, /^FAIL /), r.stdout + r.stderr).to.deep.equal([]);
    expect(r.code, r.stdout).to.equal(0);
    expect(r.stdout).to.include(`OK kube: the Kubernetes API at ${cluster().kube!.url} lists 4 Node(s)`);
    expect(r.stdout).to.include(`OK lease: this node (${cluster().net.nodeIp(0)}) is Node "${cluster().kubeNodeName(0)}", podCIDR 10.244.1.0/24, backend vxlan`);
    expect(r.stdout).to.match(new RegExp(`^WARN lease: Node "${NO_AGENT}" is not a peer: it has no annotations`, 'm'));
    for (const i of [1, 2]) {
      expect(linesMatching(r.stdout, new RegExp(`^OK peer: 10\\.244\\.${i + 1}\\.0/24 \\(${cluster().net.nodeIp(i).replace(/\./g, '\\.')}\\), vxlan: `)), r.stdout).to.have.length(1);
    }
    expect(r.stdout, 'no etcd TTL talk in kube mode').to.not.match(/expires|etcd/);
  });

  it('exits 1 naming what failed: a kubeconfig that is not there, an API that refuses, an API that does not answer', async () => {
    const kubeconfig = await forCli();
    const missing = await runCli(['status', '--kubeconfig', '/nonexistent/kubeconfig']);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.include('cannot read the kubeconfig file /nonexistent/kubeconfig');

    // The restricted identity reads Nodes but not ConfigMaps.
    const forbidden = await runCli(['status', '--kubeconfig', cluster().kube!.restrictedKubeconfig]);
    expect(forbidden.code).to.equal(1);
    expect(forbidden.stderr).to.match(new RegExp(`the Kubernetes API at ${cluster().kube!.url.replace(/\./g, '\\.')} refused to get configmaps "kube-system/twill-cfg": 403 Forbidden`));
    expect(forbidden.stderr).to.include('--net-config-path');

    // A port that takes the connection and never answers.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const mute = await runCli(['status', '--kubeconfig', kubeconfig, '--kube-api-url', `https://127.0.0.1:${port}`]);
      expect(mute.code).to.equal(1);
      expect(mute.stderr).to.include(`https://127.0.0.1:${port}`);
      expect(mute.ms, 'gives up within about 5 s').to.be.below(5500);
    } finally {
      silent.close();
    }
  });

  it('status --watch --json prints a new picture when a Node joins and when it leaves', async () => {
    const kubeconfig = await forCli();
    const child = spawn(process.execPath, [TWILL, 'status', '--kubeconfig', kubeconfig, '--watch', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const pictures = (): StatusDocument[] => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as StatusDocument);
    const has = (doc: StatusDocument | undefined, name: string): boolean => Boolean(doc?.leases.some((l) => l.node === name));
    try {
      await waitFor('the first picture', () => pictures().length === 1, 10_000);
      expect(has(pictures()[0], 'watched')).to.equal(false);
      await cluster().kube!.createNode('watched', { podCIDR: '10.244.71.0/24' });
      await waitFor('a picture with Node "watched"', () => has(pictures().at(-1), 'watched'), 5_000, 50);
      expect(pictures().at(-1)?.leases.find((l) => l.node === 'watched')).to.include({ valid: false, subnet: '10.244.71.0/24' });
      await cluster().kube!.deleteNode('watched');
      await waitFor('a picture without it', () => !has(pictures().at(-1), 'watched'), 5_000, 50);
    } finally {
      child.kill('SIGINT');
      await cluster().kube!.deleteNode('watched').catch(() => undefined);
    }
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (c) => resolve(c))));
    expect(code, 'Ctrl-C ends it with 0').to.equal(0);
  });

  it('exits 2 when etcd and Kubernetes flags are mixed, saying which', async () => {
    const kubeconfig = await forCli();
    try {
      for (const cmd of ['status', 'diagnose']) {
        const r = await runCli([cmd, '--kubeconfig', kubeconfig, '--etcd-endpoints', 'http://127.0.0.1:2379']);
        expect(r.code, cmd).to.equal(2);
        expect(r.stderr, cmd).to.include('--etcd-endpoints and --kubeconfig cannot be used together');
      }
    } finally {
      await cluster().kube!.deleteNode(NO_AGENT);
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

  for (const [from, to] of [['vxlan', 'host-gw'], ['host-gw', 'vxlan']]) {
    it(`migrates ${from} → ${to} live when the net-conf file changes, with 0 lost probes at 200 pps`, async () => {
      const probes = await Probes.start(cluster(), 200, RUNNING);
      let report: ProbeReport | undefined;
      try {
        await sleep(500);
        const written = Date.now();
        cluster().writeNetConf({ Network: NETWORK, Backend: { Type: to } });
        await waitFor(`every Node on ${to} alone, with nothing of ${from} left`, async () => {
          for (const i of RUNNING) {
            const a = (await node(i)).metadata.annotations;
            if (a[names.backendType] !== to || a[names.twillBackends] !== undefined) return false;
            if ((await hasFootprint(cluster(), i, from)).length) return false;
          }
          return true;
        }, 40_000, 250);
        const convergedMs = Date.now() - written;
        await sleep(1000);
        report = await probes.stop();
        console.log(`      ${from} -> ${to} through the net-conf file: ${report.sent} probes, ${report.lost} lost, longest reply gap ${Math.round(report.maxGapMs)} ms; converged ${convergedMs} ms after the write`);
        expect(report.lost, report.lines.join('\n')).to.equal(0);
      } finally {
        if (!report) await probes.stop().catch(() => undefined);
      }
      for (const i of RUNNING) {
        // Each agent's own patches during the migration are not mistaken for someone else's edits.
        expect(cluster().logs(i), `node ${i}`).to.not.include('writing them back');
        // flanneld writes host-gw's empty BackendData as null, vxlan's as its VNI and VTEP MAC.
        const data = (await node(i)).metadata.annotations[names.backendData];
        if (to === 'host-gw') expect(data, `node ${i}`).to.equal('null');
        else expect(Object.keys(JSON.parse(data) as object), `node ${i}`).to.deep.equal(['VNI', 'VtepMAC']);
        expect((await hasFootprint(cluster(), i, to)).length, `node ${i} runs ${to}`).to.be.greaterThan(0);
      }
    });
  }

  it('a Node added later with a podCIDR outside Network: one clear error, retried, and no exit; registered anew it waits for its podCIDR with one log line, then joins', async () => {
    const api = cluster().kube!;
    const name = cluster().kubeNodeName(LATE);
    await api.createNode(name, { podCIDR: '10.9.4.0/24', podCIDRs: ['10.9.4.0/24'] });
    const agent = await cluster().startAgent(LATE, [], { waitRunning: false });
    const outside = `cannot acquire a subnet lease: subnet "${NETWORK}" specified in the flannel net config doesn't contain "10.9.4.0/24" PodCIDR of the "${name}" node; retrying`;
    await waitFor('the agent to say its podCIDR is outside Network', () => cluster().logs(LATE).includes(outside), 15_000);
    await sleep(2500);
    expect(count(cluster().logs(LATE), outside), cluster().logs(LATE)).to.equal(1);
    expect(agent.exitedWith).to.equal(null);
    // The podCIDR is immutable: the Node is registered anew, as a kubelet does after its Node was deleted.
    await api.deleteNode(name);
    await api.createNode(name);
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

describe('twilld --kube-subnet-mgr in dual stack: Nodes with an IPv4 and an IPv6 podCIDR', function () {
  this.timeout(60_000);
  let tc: TwillCluster | undefined;
  const NODES = [0, 1];

  before(async function () {
    this.timeout(90_000);
    const binary = kubeApiserverOrSkip(this);
    tc = await TwillCluster.create({
      nodes: 2, ipv6: true,
      config: { Network: NETWORK, EnableIPv6: true, IPv6Network: 'fd00:10:244::/56', Backend: { Type: 'vxlan' } },
      kube: { binary, nodes: new Map(NODES.map((i) => [i, [`10.244.${i + 1}.0/24`, `fd00:10:244:${i + 1}::/64`]])) },
      agentArgs: ['--repair-interval', '2'],
      start: false,
    });
    for (const i of NODES) await tc.startAgent(i);
    for (const i of NODES) await tc.addPod(i);
  });
  after(async () => {
    await tc?.destroy();
  });
  const cluster = (): TwillCluster => tc!;

  it('takes each family\'s subnet from the podCIDRs, annotates PublicIPv6 and the IPv6 VTEP as flanneld, and every pod reaches every pod over both', async () => {
    for (const i of NODES) {
      expect(cluster().lease(i)).to.include({ subnet: `10.244.${i + 1}.0/24`, ipv6Subnet: `fd00:10:244:${i + 1}::/64` });
      const node = await cluster().kube!.admin.getNode(cluster().kubeNodeName(i));
      const a = node.metadata.annotations ?? {};
      expect(a[names.publicIPv6]).to.equal(`fd00:198:18::${i + 1}`);
      const v6mac = (await cluster().net.ip(i, ['link', 'show', 'flannel-v6.1'])).match(/link\/ether (\S+)/)![1];
      expect(JSON.parse(a[names.backendV6Data] ?? 'null')).to.deep.equal({ VNI: 1, VtepMAC: v6mac });
    }
    expect(await allPodsPing(cluster())).to.deep.equal([]);
    expect(await allPodsPing(cluster(), NODES, 6)).to.deep.equal([]);
  });
});
