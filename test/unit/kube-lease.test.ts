import { expect } from 'chai';
import { mkdtempSync, renameSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseNetworkConfig } from '../../lib/config';
import { flannelAnnotations, GoneError, KubeConnectionError, type KubeNode, type NodeWatchEvent, type WatchEnd } from '../../lib/kube';
import { KubeLeaseWatcher } from '../../lib/subnet/kube-lease-watcher';
import { Backoff } from '../../lib/subnet/backoff';
import { annotationDiff, leaseAnnotations, NodeSkip, nodeToLease } from '../../lib/subnet/kube-lease';
import { NetConfFile } from '../../lib/subnet/net-conf-file';
import type { LeaseAttrs, LeaseEvent } from '../../lib/subnet/lease';
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

describe('the Node watch as leases (scripted API)', () => {
  const managed = (ip: string): Record<string, string> => ({
    [names.subnetKubeManaged]: 'true', [names.publicIP]: ip, [names.backendType]: 'host-gw', [names.backendData]: 'null',
  });
  const n = (name: string, cidr: string, ip: string): KubeNode => node(name, managed(ip), cidr);
  const target = { verb: 'watch', resource: 'nodes' };

  /** A Node API whose answers the test scripts, one list or watch call at a time. */
  class Scripted {
    lists: (() => Promise<{ items: KubeNode[]; resourceVersion: string }>)[] = [];
    watches: ((onEvent: (e: NodeWatchEvent) => void, signal: AbortSignal) => Promise<WatchEnd>)[] = [];
    calls: string[] = [];
    listNodes = (): Promise<{ items: KubeNode[]; resourceVersion: string }> => {
      this.calls.push('list');
      const next = this.lists.shift();
      return next ? next() : Promise.reject(new Error('no more lists scripted'));
    };
    watchNodes = (rv: string, onEvent: (e: NodeWatchEvent) => void, signal: AbortSignal): Promise<WatchEnd> => {
      this.calls.push(`watch ${rv}`);
      const next = this.watches.shift();
      // Unscripted: a watch that stays open until stopped.
      return next ? next(onEvent, signal) : new Promise((resolve) => signal.addEventListener('abort', () => resolve({ reason: 'aborted', resourceVersion: rv })));
    };
  }

  async function watcherOn(api: Scripted) {
    const events: LeaseEvent[] = [];
    const warnings: string[] = [];
    const connectivity: boolean[] = [];
    const w = new KubeLeaseWatcher(api, names, config, {
      onEvents: (e) => events.push(...e), onWarning: (m) => warnings.push(m), onConnectivity: (up) => connectivity.push(up),
    }, new Backoff(5, 20));
    await w.start();
    const subnets = () => [...w.leases().values()].map((l) => l.subnet.toString()).sort();
    return { w, events, warnings, connectivity, subnets };
  }

  it('lists again after a 410 and applies what changed meanwhile', async () => {
    const api = new Scripted();
    api.lists.push(async () => ({ items: [n('a', '10.244.1.0/24', '198.18.0.1'), n('b', '10.244.2.0/24', '198.18.0.2')], resourceVersion: '10' }));
    api.watches.push(async () => {
      throw new GoneError(target, 'too old resource version: 10 (20)');
    });
    api.lists.push(async () => ({ items: [n('a', '10.244.1.0/24', '198.18.0.1'), n('c', '10.244.3.0/24', '198.18.0.3')], resourceVersion: '30' }));
    const { w, events, connectivity, subnets } = await watcherOn(api);
    try {
      await waitFor('the re-list', () => api.calls.includes('watch 30'), 2000, 5);
      expect(api.calls).to.deep.equal(['list', 'watch 10', 'list', 'watch 30']);
      expect(subnets()).to.deep.equal(['10.244.1.0/24', '10.244.3.0/24']);
      expect(events.map((e) => `${e.type} ${e.lease.subnet.toString()}`)).to.deep.equal([
        'added 10.244.1.0/24', 'added 10.244.2.0/24', 'removed 10.244.2.0/24', 'added 10.244.3.0/24',
      ]);
      expect(connectivity, 'a 410 is not an outage').to.deep.equal([]);
    } finally {
      await w.stop();
    }
  });

  it('reports a dropped API server once, retries without a word per retry, and lists again when it answers', async () => {
    const api = new Scripted();
    api.lists.push(async () => ({ items: [n('a', '10.244.1.0/24', '198.18.0.1')], resourceVersion: '10' }));
    const down = new KubeConnectionError(target, 'https://127.0.0.1:1', undefined, 'connect ECONNREFUSED');
    api.watches.push(async () => {
      throw down;
    });
    for (let k = 0; k < 5; k++) api.lists.push(() => Promise.reject(down));
    api.lists.push(async () => ({ items: [n('a', '10.244.1.0/24', '198.18.0.9')], resourceVersion: '50' }));
    const { w, events, warnings, connectivity } = await watcherOn(api);
    try {
      await waitFor('the watch from the new listing', () => api.calls.includes('watch 50'), 3000, 5);
      expect(connectivity).to.deep.equal([false, true]);
      expect(warnings).to.deep.equal([]);
      expect(events.map((e) => e.type)).to.deep.equal(['added', 'changed']);
    } finally {
      await w.stop();
    }
  });

  it('applies watch events: a heartbeat changes nothing, a deletion removes the lease, a shared podCIDR goes to the first Node', async () => {
    const api = new Scripted();
    api.lists.push(async () => ({ items: [n('a', '10.244.1.0/24', '198.18.0.1')], resourceVersion: '10' }));
    let send: (e: NodeWatchEvent) => void = () => undefined;
    api.watches.push((onEvent, signal) => {
      send = onEvent;
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve({ reason: 'aborted', resourceVersion: '10' })));
    });
    const { w, events, warnings, subnets } = await watcherOn(api);
    try {
      await waitFor('the watch', () => api.calls.length === 2, 1000, 5);
      send({ type: 'MODIFIED', node: n('a', '10.244.1.0/24', '198.18.0.1') });
      send({ type: 'ADDED', node: n('dup', '10.244.1.0/24', '198.18.0.7') });
      expect(warnings).to.deep.equal(['skipping Node "dup": its podCIDR 10.244.1.0/24 is Node "a"\'s too']);
      send({ type: 'DELETED', node: n('a', '10.244.1.0/24', '198.18.0.1') });
      expect(subnets()).to.deep.equal(['10.244.1.0/24']);
      expect([...w.leases().values()][0].attrs.publicIP).to.equal('198.18.0.7');
      expect(events.map((e) => `${e.type} ${e.lease.attrs.publicIP}`)).to.deep.equal(['added 198.18.0.1', 'removed 198.18.0.1', 'added 198.18.0.7']);
    } finally {
      await w.stop();
    }
  });
});
