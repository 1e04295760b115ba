/**
 * twill-cni as a container runtime runs it: a real process, inside a node
 * namespace, found by its type in CNI_PATH beside the reference plugins
 * (bridge, host-local from containernetworking-plugins), with CNI_* variables
 * and the network config on stdin. The nodes run real twilld processes on a
 * vxlan network; the pods are namespaces named like the harness's own
 * (`tw<id>-p<i>`), so the cluster's teardown removes them whatever happens.
 */
import { expect } from 'chai';
import { spawn } from 'child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TwillCluster } from '../harness/twill-cluster';
import { addNetns, ipIn } from '../harness/netns';
import { ping } from '../harness/ping';
import { waitFor } from '../harness/wait';

const PLUGIN_JS = path.resolve(__dirname, '../../cmd/twill-cni.js');
/** Where Debian's containernetworking-plugins puts bridge and host-local. */
const REFERENCE_PLUGINS = '/usr/lib/cni';
const HEALTHZ_PORT = 9943;
const NETWORK_NAME = 'twill-test';

interface PluginRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when it is empty or not JSON. */
  json?: Record<string, unknown>;
}

/** Runs `file` with `env` and `stdin` inside `ns` (null: the root namespace), as a runtime would. */
function runIn(ns: string | null, file: string, env: Record<string, string>, stdin: string): Promise<PluginRun> {
  const argv = ns === null ? [file] : ['ip', 'netns', 'exec', ns, file];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

/** Is `ip` inside `cidr` (IPv4)? */
function inSubnet(ip: string, cidr: string): boolean {
  const toInt = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const [net, len] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  return Math.floor(toInt(ip) / size) === Math.floor(toInt(net) / size);
}

interface AddResult {
  cniVersion: string;
  interfaces: { name: string; mac?: string; sandbox?: string }[];
  ips: { address: string; gateway?: string; interface?: number }[];
  routes?: { dst: string; gw?: string }[];
}

for (const dualStack of [false, true]) describe(`twill-cni on a 2-node ${dualStack ? 'dual-stack ' : ''}vxlan cluster running twilld`, function () {
  this.timeout(180_000);
  let tc: TwillCluster;
  let work: string;
  let binDir: string;
  const pods: string[] = [];
  const results: AddResult[] = [];

  /** The plugin as a runtime finds it: an executable named after its type in CNI_PATH. */
  const plugin = (): string => path.join(binDir, 'twill-cni');
  const cniPath = (): string => `${binDir}:${REFERENCE_PLUGINS}`;
  const dataDir = (node: number): string => path.join(work, `node${node}`, 'twill-cni');
  const ipamDir = (node: number): string => path.join(work, `node${node}`, 'host-local');
  const containerId = (node: number): string => `pod${node}-${tc.net.id}`;

  function conf(node: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: NETWORK_NAME,
      type: 'twill-cni',
      subnetFile: tc.subnetFile(node),
      dataDir: dataDir(node),
      readinessURL: `http://127.0.0.1:${HEALTHZ_PORT}/readyz`,
      ipam: { dataDir: ipamDir(node) },
      ...extra,
    };
  }

  function cni(node: number, command: string, config: Record<string, unknown>, opts: { id?: string; netns?: string; ifname?: string } = {}): Promise<PluginRun> {
    const env: Record<string, string> = {
      CNI_COMMAND: command,
      CNI_CONTAINERID: opts.id ?? containerId(node),
      CNI_NETNS: opts.netns ?? `/run/netns/${pods[node]}`,
      CNI_IFNAME: opts.ifname ?? 'eth0',
      CNI_PATH: cniPath(),
    };
    return runIn(tc.nodeNs(node), plugin(), env, JSON.stringify(config));
  }

  /** ADD, retried while twill-cni says "try again later" (code 11), as kubelet does. */
  async function addPod(node: number): Promise<AddResult> {
    let last: PluginRun | undefined;
    await waitFor(`ADD on node ${node} to stop answering "try again later"`, async () => {
      last = await cni(node, 'ADD', conf(node));
      return last.json?.code !== 11;
    }, 30_000, 500);
    expect(last!.code, `ADD on node ${node}: ${last!.stdout}${last!.stderr}`).to.equal(0);
    return last!.json as unknown as AddResult;
  }

  before(async function () {
    if (!existsSync(path.join(REFERENCE_PLUGINS, 'bridge')) || !existsSync(path.join(REFERENCE_PLUGINS, 'host-local'))) {
      throw new Error(`the CNI reference plugins are missing from ${REFERENCE_PLUGINS}: apt-get install containernetworking-plugins`);
    }
    work = mkdtempSync(path.join(os.tmpdir(), 'twill-cni-'));
    binDir = path.join(work, 'bin');
    mkdirSync(binDir);
    writeFileSync(plugin(), `#!/bin/sh\nexec '${process.execPath}' '${PLUGIN_JS}' "$@"\n`);
    chmodSync(plugin(), 0o755);
    tc = await TwillCluster.create({
      nodes: 2,
      ipv6: dualStack,
      config: { Network: '10.244.0.0/16', ...(dualStack ? { EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' } : {}), Backend: { Type: 'vxlan' } },
      agentArgs: ['--healthz-port', String(HEALTHZ_PORT)],
      start: false,
    });
    await tc.startAgent(0);
    await tc.startAgent(1);
    for (let i = 0; i < 2; i++) {
      pods[i] = `${tc.net.prefix}${tc.net.id}-p${i}`;
      await addNetns(pods[i]);
    }
  });

  after(async () => {
    try {
      await tc?.destroy();
    } finally {
      if (work) rmSync(work, { recursive: true, force: true });
    }
  });

  if (!dualStack) it('VERSION lists the spec versions, 1.0.0 among them', async () => {
    const r = await runIn(null, plugin(), { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
    expect(r.code).to.equal(0);
    expect(r.json).to.deep.equal({ cniVersion: '1.0.0', supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
  });

  it(`ADD gives each pod an address in its node's subnet${dualStack ? ' and one in its IPv6 subnet' : ''}, cni0 as gateway and the vxlan MTU`, async () => {
    for (let i = 0; i < 2; i++) {
      const r = await addPod(i);
      results[i] = r;
      const lease = tc.lease(i);
      const gw = lease.subnet.replace(/\.0\/\d+$/, '.1');
      expect(r.cniVersion).to.equal('1.0.0');
      expect(r.ips).to.have.length(dualStack ? 2 : 1);
      if (dualStack) {
        // host-local with one range per family, as flannel's plugin: the IPv6 address in the node's IPv6 subnet, its ::1 the gateway.
        const v6 = lease.ipv6Subnet!;
        expect(r.ips[1].address).to.match(new RegExp(`^${v6.replace(/::\/64$/, '')}::[0-9a-f]+/64$`));
        expect(r.ips[1].gateway).to.equal(v6.replace(/::\/64$/, '::1'));
        expect(r.routes).to.deep.include({ dst: 'fd00:10:244::/56', gw: r.ips[1].gateway });
      }
      const [addr, len] = r.ips[0].address.split('/');
      expect(inSubnet(addr, lease.subnet), `${addr} in ${lease.subnet}`).to.equal(true);
      expect(len).to.equal(lease.subnet.split('/')[1]);
      expect(r.ips[0].gateway).to.equal(gw);
      expect(r.interfaces.map((x) => x.name)).to.include('cni0');
      const podIf = r.interfaces[r.ips[0].interface!];
      expect(podIf).to.include({ name: 'eth0', sandbox: `/run/netns/${pods[i]}` });
      expect(r.routes).to.deep.include({ dst: '10.244.0.0/16', gw });

      const podAddr = await ipIn(pods[i], ['-o', 'addr', 'show', 'dev', 'eth0']);
      expect(podAddr).to.contain(`inet ${r.ips[0].address}`);
      expect(await ipIn(pods[i], ['link', 'show', 'dev', 'eth0'])).to.contain(`mtu ${lease.mtu}`);
      expect(await ipIn(tc.nodeNs(i), ['-o', 'addr', 'show', 'dev', 'cni0'])).to.contain(`inet ${gw}/`);
    }
  });

  it(`lets pod 0 ping pod 1 across the nodes, and back${dualStack ? ', over IPv4 and over IPv6' : ''}`, async () => {
    for (const family of dualStack ? [0, 1] : [0]) {
      const ip0 = results[0].ips[family].address.split('/')[0];
      const ip1 = results[1].ips[family].address.split('/')[0];
      const there = await ping(pods[0], ip1, { count: 3, intervalMs: 200, timeoutMs: 8000 });
      const back = await ping(pods[1], ip0, { count: 3, intervalMs: 200, timeoutMs: 8000 });
      expect(there.received, `pod 0 -> ${ip1}`).to.be.greaterThan(0);
      expect(back.received, `pod 1 -> ${ip0}`).to.be.greaterThan(0);
    }
  });

  it('saves the bridge config it delegated under dataDir, named by container id', () => {
    const saved = JSON.parse(readFileSync(path.join(dataDir(0), containerId(0)), 'utf8')) as Record<string, unknown>;
    const lease = tc.lease(0);
    expect(saved).to.deep.include({
      cniVersion: '1.0.0', name: NETWORK_NAME, type: 'bridge', bridge: 'cni0', isGateway: true,
      ipMasq: true, // twilld runs without --ip-masq, so the bridge masquerades
      mtu: lease.mtu,
    });
    expect(saved.ipam).to.deep.equal({
      dataDir: ipamDir(0), type: 'host-local',
      ranges: dualStack ? [[{ subnet: lease.subnet }], [{ subnet: lease.ipv6Subnet }]] : [[{ subnet: lease.subnet }]],
      routes: [
        { dst: '10.244.0.0/16', gw: lease.subnet.replace(/\.0\/\d+$/, '.1') },
        ...(dualStack ? [{ dst: 'fd00:10:244::/56', gw: lease.ipv6Subnet!.replace(/::\/64$/, '::1') }] : []),
      ],
    });
  });

  // The rest does not depend on the address families: once, on the IPv4 cluster.
  if (dualStack) return;

  it('CHECK with the ADD\'s result as prevResult succeeds', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await cni(i, 'CHECK', conf(i, { prevResult: results[i] }));
      expect(r.code, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout).to.equal('');
    }
  });

  it('CHECK fails, naming both subnets, when the node no longer holds the pod\'s subnet', async () => {
    const moved = path.join(work, 'moved.env');
    writeFileSync(moved, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.250.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
    const r = await cni(0, 'CHECK', conf(0, { prevResult: results[0], subnetFile: moved }));
    expect(r.code).to.equal(1);
    expect(r.json?.msg).to.contain(tc.lease(0).subnet).and.to.contain('10.244.250.0/24');
  });

  it('CHECK without prevResult is refused as an invalid config (7)', async () => {
    const r = await cni(0, 'CHECK', conf(0));
    expect(r.code).to.equal(1);
    expect(r.json).to.include({ cniVersion: '1.0.0', code: 7 });
  });

  it('ADD refuses with "try again later" (11) and a clear message when subnet.env is missing', async () => {
    const missing = path.join(work, 'no-such-dir', 'subnet.env');
    const r = await cni(0, 'ADD', conf(0, { subnetFile: missing }), { id: 'never-added', ifname: 'eth1' });
    expect(r.code).to.equal(1);
    expect(r.json).to.include({ cniVersion: '1.0.0', code: 11 });
    expect(r.json?.msg).to.equal(`twilld is not ready on this node: ${missing} does not exist yet`);
    expect(r.json?.details).to.be.a('string');
    expect(existsSync(path.join(dataDir(0), 'never-added')), 'no saved config for a refused ADD').to.equal(false);
    expect(await ipIn(pods[0], ['link', 'show'])).not.to.contain('eth1');
  });

  it('ADD refuses with "try again later" (11) while readinessURL does not answer 200', async () => {
    const r = await cni(0, 'ADD', conf(0, { readinessURL: 'http://127.0.0.1:1/readyz' }), { id: 'not-ready', ifname: 'eth1' });
    expect(r.code).to.equal(1);
    expect(r.json).to.include({ code: 11 });
    expect(r.json?.msg).to.contain('http://127.0.0.1:1/readyz cannot be reached');
  });

  it('DEL removes the veth and frees the address; a second DEL succeeds too', async () => {
    const r = results[1];
    const hostVeth = r.interfaces.find((x) => !x.sandbox && x.name !== 'cni0')!.name;
    const addr = r.ips[0].address.split('/')[0];
    const reservation = path.join(ipamDir(1), NETWORK_NAME, addr);
    expect(existsSync(reservation), 'host-local reservation before DEL').to.equal(true);
    expect(await ipIn(tc.nodeNs(1), ['link', 'show'])).to.contain(hostVeth);

    const del = await cni(1, 'DEL', conf(1, { prevResult: r }));
    expect(del.code, del.stdout + del.stderr).to.equal(0);
    expect(del.stdout).to.equal('');
    expect(await ipIn(tc.nodeNs(1), ['link', 'show'])).not.to.contain(hostVeth);
    expect(await ipIn(pods[1], ['link', 'show'])).not.to.contain('eth0');
    expect(existsSync(reservation), 'host-local reservation after DEL').to.equal(false);
    expect(existsSync(path.join(dataDir(1), containerId(1))), 'saved config after DEL').to.equal(false);

    const again = await cni(1, 'DEL', conf(1, { prevResult: r }));
    expect(again.code, again.stdout + again.stderr).to.equal(0);
  });

  it('DEL of a container it never added, without a namespace, succeeds', async () => {
    const r = await cni(0, 'DEL', conf(0, { subnetFile: path.join(work, 'absent.env') }), { id: 'unknown-container', netns: '' });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(readdirSync(dataDir(0))).to.deep.equal([containerId(0)]);
  });
});

describe('twill-cni: malformed invocations', () => {
  /** The compiled plugin, run directly by node in the root namespace: these fail before touching anything. */
  const run = (env: Record<string, string>, stdin: string): Promise<PluginRun> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [PLUGIN_JS], { env });
      let stdout = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr: '', json: stdout ? (JSON.parse(stdout) as Record<string, unknown>) : undefined }));
      child.stdin.end(stdin);
    });
  const full = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_PLUGINS };
  const good = JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'twill-cni', subnetFile: '/nonexistent/subnet.env', dataDir: '/nonexistent/data' });

  it('names the missing CNI_* variables (4)', async () => {
    const r = await run({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1' }, good);
    expect(r.code).to.equal(1);
    expect(r.json).to.include({ code: 4, msg: 'ADD needs CNI_NETNS, CNI_IFNAME, CNI_PATH, which are not set' });
  });

  it('refuses a container id that is not one (4), so it can never name a file outside dataDir', async () => {
    const r = await run({ CNI_COMMAND: 'DEL', ...full, CNI_CONTAINERID: '../../etc/passwd' }, good);
    expect(r.json).to.include({ code: 4 });
  });

  it('refuses stdin that is not JSON (6) and an unsupported cniVersion (1)', async () => {
    expect((await run({ CNI_COMMAND: 'ADD', ...full }, '{not json')).json).to.include({ code: 6 });
    const r = await run({ CNI_COMMAND: 'ADD', ...full }, JSON.stringify({ cniVersion: '9.9.9', name: 'n', type: 'twill-cni' }));
    expect(r.json).to.include({ cniVersion: '1.0.0', code: 1 });
  });

  it('refuses delegate.ipam and ipam.ranges (2), which come from the node\'s lease', async () => {
    const base = JSON.parse(good) as Record<string, unknown>;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-cni-env-'));
    try {
      const env = path.join(dir, 'subnet.env');
      writeFileSync(env, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
      const a = await run({ CNI_COMMAND: 'ADD', ...full }, JSON.stringify({ ...base, subnetFile: env, delegate: { ipam: {} } }));
      expect(a.json).to.include({ code: 2 });
      expect(a.json?.msg).to.contain('delegate.ipam');
      const b = await run({ CNI_COMMAND: 'ADD', ...full }, JSON.stringify({ ...base, subnetFile: env, ipam: { ranges: [] } }));
      expect(b.json).to.include({ code: 2 });
      expect(b.json?.msg).to.contain('ipam.ranges');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
