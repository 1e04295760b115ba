/**
 * The pure parts of `twill status` / `twill diagnose` in Kubernetes mode:
 * which store the flags mean, and the rows built from Nodes (what the
 * table and --json say about them).
 */
import { expect } from 'chai';
import { Command } from 'commander';
import { addEtcdOptions } from '../../lib/cli/etcd-options';
import { addKubeOptions, chooseStore, kubeCliFrom, netConfSourceOf, storeOf, StoreFlagsError } from '../../lib/cli/kube-options';
import { describeKubeFailure } from '../../lib/kube/cluster-read';
import { KubeApiError, flannelAnnotations, type KubeNode } from '../../lib/kube';
import { buildKubeClusterStatus, type KubeStatusInput } from '../../lib/cli/status/kube-model';
import { renderTable } from '../../lib/cli/status/table';
import { toDocument } from '../../lib/cli/status/json';
import { renderHtml } from '../../lib/cli/status/html';
import { filterNodes } from '../../lib/subnet/kube-lease';
import { parseNetworkConfig } from '../../lib/config';

const names = flannelAnnotations();
const NET_CONF = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';

function node(name: string, podCIDR: string | undefined, annotations: Record<string, string>): KubeNode {
  return {
    metadata: { name, resourceVersion: '7', annotations, labels: {} },
    spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {},
    status: { addresses: [], conditions: [] },
  };
}

function vxlanNode(name: string, podCIDR: string, ip: string, mac: string): KubeNode {
  return node(name, podCIDR, {
    [names.subnetKubeManaged]: 'true', [names.publicIP]: ip, [names.backendType]: 'vxlan',
    [names.backendData]: `{"VNI":1,"VtepMAC":"${mac}"}`,
  });
}

/** Parses `args` as `twill status` would and returns the store they mean (or the StoreFlagsError). */
function storeFor(args: string[]): string {
  const cmd = addKubeOptions(addEtcdOptions(new Command('status'))).exitOverride().configureOutput({ writeErr: () => undefined });
  cmd.parse(args, { from: 'user' });
  try {
    return storeOf(cmd);
  } catch (err) {
    if (err instanceof StoreFlagsError) return `usage: ${err.message}`;
    throw err;
  }
}

describe('twill status/diagnose: etcd or Kubernetes, from the flags typed', () => {
  it('reads etcd without Kubernetes flags, and Kubernetes with any of --kubeconfig, --kube-subnet-mgr, --kube-api-url', () => {
    expect(storeFor([])).to.equal('etcd');
    expect(storeFor(['--etcd-endpoints', 'http://10.0.0.1:2379'])).to.equal('etcd');
    expect(storeFor(['--kubeconfig', '/k'])).to.equal('kube');
    expect(storeFor(['--kube-subnet-mgr'])).to.equal('kube');
    expect(storeFor(['--kube-api-url', 'https://10.0.0.1:6443', '--net-config-path', '/n.json'])).to.equal('kube');
  });

  it('refuses etcd flags beside Kubernetes ones, naming both', () => {
    expect(storeFor(['--kubeconfig', '/k', '--etcd-prefix', '/x'])).to.equal(
      'usage: --etcd-prefix and --kubeconfig cannot be used together: etcd flags read etcd, --kubeconfig reads the Kubernetes API; give the flags of the store twilld uses');
  });

  it('refuses a Kubernetes-only flag without a Kubernetes mode flag', () => {
    expect(storeFor(['--kube-net-conf', 'kube-system/other'])).to.match(/^usage: --kube-net-conf applies only in Kubernetes mode: add --kubeconfig/);
    expect(storeFor(['--net-config-path', '/n.json'])).to.match(/^usage: --net-config-path applies only in Kubernetes mode/);
  });

  it('lets FLANNELD_* defaults stand beside Kubernetes flags: only typed flags choose', () => {
    process.env.FLANNELD_ETCD_ENDPOINTS = 'http://10.0.0.9:2379';
    try {
      expect(storeFor(['--kubeconfig', '/k'])).to.equal('kube');
    } finally {
      delete process.env.FLANNELD_ETCD_ENDPOINTS;
    }
  });

  it('chooseStore names the first flag of each kind', () => {
    expect(() => chooseStore({ etcd: ['--etcd-endpoints'], kube: ['--kube-api-url'], kubeOnly: [] })).to.throw(StoreFlagsError, /--etcd-endpoints and --kube-api-url cannot be used together/);
  });

  it('refuses a --kube-net-conf that is not namespace/name, and a bad annotation prefix, before anything runs', () => {
    expect(() => storeFor(['--kubeconfig', '/k', '--kube-net-conf', 'twill-cfg'])).to.throw(/must be <namespace>\/<name> of a ConfigMap/);
    expect(() => storeFor(['--kubeconfig', '/k', '--kube-annotation-prefix', 'a/b/c'])).to.throw(/may contain at most one "\/"/);
  });

  it('says in this command\'s flags that --kube-subnet-mgr alone needs a pod', () => {
    const opts = { kubeSubnetMgr: true, kubeAnnotationPrefix: 'flannel.alpha.coreos.com', kubeNetConf: 'kube-system/twill-cfg' };
    expect(() => kubeCliFrom(opts, {})).to.throw("--kube-subnet-mgr without --kubeconfig uses the pod's service account, but this is not a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set): give --kubeconfig <file>");
  });

  it('names the API server, the verb and the resource when the server refuses', () => {
    const err = new KubeApiError({ verb: 'list', resource: 'nodes' }, 403, 'User "x" cannot list resource "nodes"', 'Forbidden');
    const text = describeKubeFailure(err, 'https://10.0.0.1:6443', 3500);
    expect(text).to.match(/^the Kubernetes API at https:\/\/10\.0\.0\.1:6443 refused to list nodes: 403 Forbidden: User "x" cannot list resource "nodes"/);
    const late = Object.assign(new Error('aborted'), { name: 'AbortError' });
    expect(describeKubeFailure(late, 'https://10.0.0.1:6443', 3500)).to.match(/^the Kubernetes API at https:\/\/10\.0\.0\.1:6443 did not answer within 3\.5 s/);
  });
});

describe('twill status in Kubernetes mode: rows from Nodes', () => {
  const nodes: KubeNode[] = [
    vxlanNode('n0', '10.244.1.0/24', '198.18.0.1', '02:00:00:00:00:01'),
    vxlanNode('n1', '10.244.2.0/24', '198.18.0.2', '02:00:00:00:00:02'),
    node('bare', '10.244.60.0/24', {}),
    node('broken', '10.244.61.0/24', { [names.subnetKubeManaged]: 'true', [names.publicIP]: '198.18.0.61', [names.backendType]: 'vxlan', [names.backendData]: '{"VNI":1,' }),
    // Listed after n0 with n0's podCIDR: the agents keep n0's.
    vxlanNode('n0-twin', '10.244.1.0/24', '198.18.0.9', '02:00:00:00:00:09'),
    vxlanNode('outside', '10.99.0.0/24', '198.18.0.7', '02:00:00:00:00:07'),
  ];
  const input: KubeStatusInput = {
    server: 'https://198.18.0.100:6443', resourceVersion: '1234', readAt: new Date('2026-01-01T00:00:00Z'),
    netConf: 'ConfigMap kube-system/twill-cfg, key net-conf.json', configText: NET_CONF, nodes, names,
  };

  it('judges each Node by the agents\' rule, keeping the reason of those they skip', () => {
    const status = buildKubeClusterStatus(input);
    // The JSON parser's own words vary with the Node version: only the start is ours.
    const byNode = Object.fromEntries(status.rows.map((r) => [r.node, r.invalid?.startsWith(`its annotation ${names.backendData} is not JSON (`) ? 'not JSON' : r.invalid ?? 'peer']));
    expect(byNode).to.deep.equal({
      n0: 'peer',
      n1: 'peer',
      bare: 'it has no annotations (no flannel-compatible agent has run on it yet)',
      broken: 'not JSON',
      'n0-twin': 'its podCIDR 10.244.1.0/24 is Node "n0"\'s too',
      outside: 'subnet "10.244.0.0/16" specified in the flannel net config doesn\'t contain "10.99.0.0/24" PodCIDR of the "outside" node',
    });
    // Sorted by subnet, as etcd leases are.
    expect(status.rows.map((r) => r.node)).to.deep.equal(['outside', 'n0', 'n0-twin', 'n1', 'bare', 'broken']);
  });

  it('prints a NODE column instead of EXPIRES, VIA between the peers, and names the API server and the ConfigMap', () => {
    const text = renderTable(buildKubeClusterStatus(input), { colour: false });
    const lines = text.split('\n');
    expect(lines[0]).to.equal('Network config (ConfigMap kube-system/twill-cfg, key net-conf.json)');
    expect(text).to.include('Leases: 6 Nodes (4 invalid) at https://198.18.0.100:6443');
    const header = lines.find((l) => l.startsWith('NODE'));
    expect(header?.split(/\s{2,}/)).to.deep.equal(['NODE', 'SUBNET', 'PUBLIC IP', 'BACKENDS', 'VIA', 'VTEP MAC', 'PROBLEM']);
    const row = (name: string): string[] => (lines.find((l) => l.startsWith(`${name} `)) ?? '').split(/\s{2,}/);
    expect(row('n0')).to.deep.equal(['n0', '10.244.1.0/24', '198.18.0.1', 'vxlan', 'vxlan×1', '02:00:00:00:00:01']);
    expect(row('bare').slice(0, 2)).to.deep.equal(['bare', '10.244.60.0/24']);
    expect(row('bare').at(-1)).to.equal('INVALID: it has no annotations (no flannel-compatible agent has run on it yet)');
  });

  it('says a missing net-conf is missing, in Kubernetes words, and lists the Nodes unchecked', () => {
    const text = renderTable(buildKubeClusterStatus({ ...input, configText: undefined }), { colour: false });
    expect(text).to.include('MISSING: there is no ConfigMap kube-system/twill-cfg, key net-conf.json; twilld waits until there is one. Nodes are listed unchecked.');
    // Unchecked: the Node outside 10.244.0.0/16 is a peer now.
    expect(text).to.match(/^outside\s+10\.99\.0\.0\/24\s+198\.18\.0\.7/m);
  });

  it('--json carries kube in place of etcd and each lease\'s Node, with no expiry', () => {
    const doc = toDocument(buildKubeClusterStatus(input));
    expect(doc.etcd).to.equal(undefined);
    expect(doc.kube).to.deep.equal({ server: 'https://198.18.0.100:6443', resourceVersion: '1234', netConf: 'ConfigMap kube-system/twill-cfg, key net-conf.json' });
    const n0 = doc.leases.find((l) => l.node === 'n0');
    expect(n0).to.include({ key: 'n0', subnet: '10.244.1.0/24', publicIP: '198.18.0.1', valid: true, etcdLeaseId: null, expirySeconds: null, reservation: false });
    expect(n0?.peers).to.deep.equal([{ subnet: '10.244.2.0/24', backend: 'vxlan', encrypted: false }]);
    expect(doc.leases.find((l) => l.node === 'bare')).to.include({ valid: false, subnet: '10.244.60.0/24', publicIP: null });
  });
});

describe('twill status --html in Kubernetes mode', () => {
  it('titles the page with the API server and names each box\'s Node where etcd says when it expires', () => {
    const html = renderHtml(buildKubeClusterStatus({
      server: 'https://198.18.0.100:6443', resourceVersion: '9', readAt: new Date(0), netConf: 'file /etc/kube-flannel/net-conf.json', configText: NET_CONF, names,
      nodes: [vxlanNode('n0', '10.244.1.0/24', '198.18.0.1', '02:00:00:00:00:01'), vxlanNode('n1', '10.244.2.0/24', '198.18.0.2', '02:00:00:00:00:02')],
    }));
    expect(html).to.include('<h1>twill status — https://198.18.0.100:6443</h1>');
    expect(html).to.include('network config from the file /etc/kube-flannel/net-conf.json');
    expect(html).to.match(/<g class="node node-lease" data-node="10\.244\.1\.0\/24"[^>]*>.*?>Node n0<\/text>/s);
    expect(html).to.include('data-edge="10.244.1.0/24|10.244.2.0/24"');
    expect(html).to.include('<th>Node</th>');
    expect(html).to.not.include('expires in');
  });
});

describe('filterNodes', () => {
  it('gives a shared podCIDR to the Node listed first, and frees nothing else', () => {
    const config = parseNetworkConfig(NET_CONF, ['vxlan']);
    const v = filterNodes([vxlanNode('a', '10.244.1.0/24', '198.18.0.1', '02:00:00:00:00:01'), vxlanNode('b', '10.244.1.0/24', '198.18.0.2', '02:00:00:00:00:02')], names, config);
    expect(v.map((x) => (x.lease ? x.lease.key : x.skip.reason))).to.deep.equal(['10.244.1.0-24', 'its podCIDR 10.244.1.0/24 is Node "a"\'s too']);
  });
});

describe('where the CLI reads the network config in Kubernetes mode', () => {
  const base = { kubeAnnotationPrefix: 'flannel.alpha.coreos.com', kubeNetConf: 'kube-system/twill-cfg' };
  const mounted = (file: string) => file === '/etc/kube-flannel/net-conf.json';

  it('in the twill pod (--kube-subnet-mgr, no kubeconfig): the mounted net-conf.json twilld reads, when it is there', () => {
    expect(netConfSourceOf({ ...base, kubeSubnetMgr: true }, mounted)).to.deep.equal({ kind: 'file', path: '/etc/kube-flannel/net-conf.json' });
    expect(netConfSourceOf({ ...base, kubeSubnetMgr: true }, () => false)).to.deep.equal({ kind: 'configmap', namespace: 'kube-system', name: 'twill-cfg' });
  });

  it('with a kubeconfig or another ConfigMap named: the ConfigMap; --net-config-path always wins', () => {
    expect(netConfSourceOf({ ...base, kubeconfig: '/k', kubeSubnetMgr: true }, mounted)).to.deep.equal({ kind: 'configmap', namespace: 'kube-system', name: 'twill-cfg' });
    expect(netConfSourceOf({ ...base, kubeSubnetMgr: true, kubeNetConf: 'kube-flannel/kube-flannel-cfg' }, mounted)).to.deep.equal({ kind: 'configmap', namespace: 'kube-flannel', name: 'kube-flannel-cfg' });
    expect(netConfSourceOf({ ...base, kubeconfig: '/k', netConfigPath: '/tmp/n.json' }, mounted)).to.deep.equal({ kind: 'file', path: '/tmp/n.json' });
  });
});
