import { expect } from 'chai';
import { mkdtempSync, renameSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseNetworkConfig } from '../../lib/config';
import { flannelAnnotations, type KubeNode } from '../../lib/kube';
import { annotationDiff, leaseAnnotations, NodeSkip, nodeToLease } from '../../lib/subnet/kube-lease';
import { NetConfFile } from '../../lib/subnet/net-conf-file';
import type { LeaseAttrs } from '../../lib/subnet/lease';
import { waitFor } from '../harness/wait';

const names = flannelAnnotations();
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}', ['vxlan', 'host-gw']);

function node(name: string, annotations: Record<string, string>, podCIDR?: string): KubeNode {
  return {
    metadata: { name, resourceVersion: '42', annotations, labels: {} },
    spec: podCIDR ? { podCIDR } : {},
    status: { addresses: [], conditions: [] },
  };
}

const vxlanAttrs: LeaseAttrs = {
  publicIP: '198.18.0.1', publicIPv6: null, backendType: 'vxlan',
  backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
  backends: [{ type: 'vxlan', data: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' } }, { type: 'host-gw' }],
};

function skipOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(NodeSkip);
    return (err as Error).message;
  }
  throw new Error('expected a NodeSkip');
}

describe('kube leases: Node annotations ⇄ lease', () => {
  it('writes flanneld\'s annotation names and JSON shapes, and twill\'s backends list in its own annotation', () => {
    const a = leaseAnnotations(vxlanAttrs, names, {});
    expect(a).to.deep.equal({
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}',
      'flannel.alpha.coreos.com/public-ip': '198.18.0.1',
      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
      'flannel.alpha.coreos.com/twill-backends': '[{"Type":"vxlan","Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}},{"Type":"host-gw"}]',
    });
    // host-gw has no data: flanneld writes the JSON literal null.
    expect(leaseAnnotations({ publicIP: '198.18.0.1', publicIPv6: null, backendType: 'host-gw' }, names, {})['flannel.alpha.coreos.com/backend-data']).to.equal('null');
  });

  it('publishes the operator\'s public-ip-overwrite instead of the agent\'s address', () => {
    const a = leaseAnnotations(vxlanAttrs, names, { 'flannel.alpha.coreos.com/public-ip-overwrite': '203.0.113.9' });
    expect(a['flannel.alpha.coreos.com/public-ip']).to.equal('203.0.113.9');
  });

  it('patches only what differs, and removes twill-backends when no list is advertised', () => {
    const current = Object.fromEntries(Object.entries(leaseAnnotations(vxlanAttrs, names, {})).filter((e): e is [string, string] => e[1] !== null));
    expect(annotationDiff(leaseAnnotations(vxlanAttrs, names, current), current)).to.deep.equal({});
    const plain = { ...vxlanAttrs, backends: undefined };
    expect(annotationDiff(leaseAnnotations(plain, names, current), current)).to.deep.equal({ 'flannel.alpha.coreos.com/twill-backends': null });
    expect(annotationDiff(leaseAnnotations(plain, names, {}), {})).to.not.have.property('flannel.alpha.coreos.com/twill-backends');
  });

  it('reads a Node written by flanneld (or twill) back into the same lease attributes', () => {
    const written = leaseAnnotations(vxlanAttrs, names, {});
    const annotations = Object.fromEntries(Object.entries(written).filter((e): e is [string, string] => e[1] !== null));
    const lease = nodeToLease(node('n1', annotations, '10.244.3.0/24'), names, config);
    expect(lease.key).to.equal('10.244.3.0-24');
    expect(lease.subnet.toString()).to.equal('10.244.3.0/24');
    expect(lease.attrs).to.deep.equal({ ...vxlanAttrs, backendV6Data: undefined });
    expect(lease.modRevision).to.equal(42n);
  });

  it('skips, with the reason, a Node that cannot be a peer', () => {
    const good = { ...leaseAnnotations({ ...vxlanAttrs, backends: undefined }, names, {}) } as Record<string, string>;
    delete good['flannel.alpha.coreos.com/twill-backends'];
    expect(skipOf(() => nodeToLease(node('bare', {}, '10.244.9.0/24'), names, config))).to.equal('skipping Node "bare": it has no annotations (no flannel-compatible agent has run on it yet)');
    expect(skipOf(() => nodeToLease(node('x', { ...good, 'flannel.alpha.coreos.com/backend-data': '{"VNI":' }, '10.244.9.0/24'), names, config)))
      .to.match(/^skipping Node "x": its annotation flannel.alpha.coreos.com\/backend-data is not JSON \(.*\): "\{\\"VNI\\":"$/);
    expect(skipOf(() => nodeToLease(node('x', good), names, config))).to.equal('skipping Node "x": it has no IPv4 podCIDR');
    expect(skipOf(() => nodeToLease(node('x', good, '10.9.0.0/24'), names, config)))
      .to.equal('skipping Node "x": subnet "10.244.0.0/16" specified in the flannel net config doesn\'t contain "10.9.0.0/24" PodCIDR of the "x" node');
    expect(skipOf(() => nodeToLease(node('x', { ...good, 'flannel.alpha.coreos.com/public-ip': 'nope' }, '10.244.9.0/24'), names, config)))
      .to.equal('skipping Node "x": its annotations: PublicIP "nope" is not an IPv4 address');
    const noIp = { ...good };
    delete noIp['flannel.alpha.coreos.com/public-ip'];
    expect(skipOf(() => nodeToLease(node('x', noIp, '10.244.9.0/24'), names, config))).to.equal('skipping Node "x": it has no annotation flannel.alpha.coreos.com/public-ip');
    expect(skipOf(() => nodeToLease(node('x', { other: 'a' }, '10.244.9.0/24'), names, config)))
      .to.equal('skipping Node "x": its annotation flannel.alpha.coreos.com/kube-subnet-manager is not "true" (no flannel-compatible agent has run on it yet)');
  });
});

describe('the net-conf file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-netconf-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports a ConfigMap-style symlink swap once, with a newer revision, and a removed file once', async () => {
    // The kubelet's layout: file → ..data/file, ..data → a timestamped directory swapped by rename.
    const version = (n: number, text: string): void => {
      mkdirSync(path.join(dir, `..v${n}`));
      writeFileSync(path.join(dir, `..v${n}`, 'net-conf.json'), text);
      symlinkSync(`..v${n}`, path.join(dir, `..data_tmp`));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    };
    version(1, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    symlinkSync('..data/net-conf.json', path.join(dir, 'net-conf.json'));
    const file = new NetConfFile(path.join(dir, 'net-conf.json'));
    const first = await file.read();
    expect(first?.text).to.contain('vxlan');
    const seen: (string | undefined)[] = [];
    const watch = file.watch(first!.revision + 1n, { onChange: (f) => seen.push(f?.text) }, { debounceMs: 50, pollMs: 60_000 });
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect(seen).to.deep.equal([]);
      version(2, '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}');
      await waitFor('the swap to be reported', () => seen.length === 1, 3000, 20);
      expect(seen[0]).to.contain('host-gw');
      await new Promise((r) => setTimeout(r, 200));
      expect(seen).to.have.length(1);
      rmSync(path.join(dir, 'net-conf.json'));
      await waitFor('the removal to be reported', () => seen.length === 2, 3000, 20);
      expect(seen[1]).to.equal(undefined);
    } finally {
      await watch.stop();
    }
  });
});
