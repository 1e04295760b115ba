/**
 * The container image, built offline by `npm run image` (cmd/build-image.sh,
 * FROM scratch), run as the DaemonSet runs it: twilld with the host's network
 * (here: a test node's namespace) and privileges, as one node of a 3-node
 * vxlan cluster whose other nodes run twilld from this checkout; then the
 * DaemonSet's own install-cni script, run in the image, puts twill-cni on the
 * "host", and that plugin attaches a new pod to the image's node.
 *
 * The image runs under `buildah run --isolation chroot --network host`: no
 * OCI runtime or container registry is needed. Skipped, saying so, without
 * buildah. TWILL_TEST_IMAGE=twill:<version> uses an image built already
 * (`npm run image`) instead of building one (~30-70 s here). Everything created (cluster, container, image, files) is removed.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as path from 'path';
import { loadAll } from 'js-yaml';
import { TwillCluster } from '../harness/twill-cluster';
import { UNDERLAY } from '../harness/cluster';

import { NsProcess, addNetns } from '../harness/netns';
import { ping } from '../harness/ping';
import { waitFor } from '../harness/wait';

const REPO = path.resolve(__dirname, '../../..');
const REFERENCE_PLUGINS = '/usr/lib/cni';

function run(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

function manifests(): any[] {
  return (loadAll(readFileSync(path.join(REPO, 'manifests/kubernetes/twill.yaml'), 'utf8')) as any[]).filter(Boolean);
}

function daemonSet(): any {
  return manifests().find((d) => d.kind === 'DaemonSet');
}

function hasBuildah(): boolean {
  return !spawnSync('buildah', ['--version'], { stdio: 'ignore' }).error;
}

describe('the container image (FROM scratch, built offline) as a node of a 3-node vxlan cluster', function () {
  this.timeout(600_000);
  let tag = `localhost/twill-test:${process.pid}`;
  let work: string;
  let tc: TwillCluster | undefined;
  let container: string | undefined;
  let imageBuilt = false;
  let agent: NsProcess | undefined;
  let buildLog = '';

  before(async function () {
    if (!hasBuildah()) {
      console.log('      skipped: buildah is not installed (bash cmd/install-deps.sh installs it)');
      this.skip();
    }
    work = mkdtempSync('/var/tmp/twill-image-test-');
    if (process.env.TWILL_TEST_IMAGE) {
      // An image built already (npm run image): used as it is, and kept.
      tag = process.env.TWILL_TEST_IMAGE;
      const size = await run(['buildah', 'images', '--format', '{{.Size}}', tag]);
      expect(size.code, size.stderr).to.equal(0);
      buildLog = `build-image: built ${tag} (${size.stdout.trim().split('\n')[0]})`;
    } else {
      const started = Date.now();
      const built = await run(['bash', path.join(REPO, 'cmd/build-image.sh')], { env: { ...process.env, TWILL_IMAGE: tag }, timeoutMs: 300_000 });
      buildLog = built.stdout + built.stderr;
      expect(built.code, buildLog).to.equal(0);
      imageBuilt = true;
      console.log(`      figures: image built in ${((Date.now() - started) / 1000).toFixed(1)} s; ${buildLog.trim().split('\n').pop()}`);
    }
    const from = await run(['buildah', 'from', '--name', `twill-test-${process.pid}`, tag]);
    expect(from.code, from.stderr).to.equal(0);
    container = from.stdout.trim();
    tc = await TwillCluster.create({ nodes: 3, config: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }, start: false });
  });

  after(async () => {
    if (tc) await tc.destroy().catch(() => undefined);
    if (container) await run(['buildah', 'rm', container]);
    if (imageBuilt) await run(['buildah', 'rmi', '-f', tag]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** argv as `buildah run` runs it in the image, with the host's network and all capabilities, in `ns` (null: here). */
  function inImage(argv: string[], mounts: string[], ns: string | null): string[] {
    const volumes = mounts.flatMap((m) => ['-v', m]);
    // The DaemonSet says privileged; here the capabilities twilld uses (this sandbox's bounding set lacks some of "ALL").
    const caps = ['CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_SYS_ADMIN'].flatMap((c) => ['--cap-add', c]);
    const cmd = ['buildah', 'run', '--isolation', 'chroot', '--network', 'host', ...caps, ...volumes, container!, '--', ...argv];
    return ns ? ['ip', 'netns', 'exec', ns, ...cmd] : cmd;
  }

  it('is small, and says its size', () => {
    const m = /built \S+ \(([\d.]+) (MB|GB|kB)\)/.exec(buildLog);
    expect(m, buildLog).to.not.equal(null);
    const mb = Number(m![1]) * (m![2] === 'GB' ? 1000 : m![2] === 'kB' ? 0.001 : 1);
    expect(mb, 'image size in MB').to.be.below(250);
  });

  it('runs twilld as a node: every pod pings every pod', async () => {
    const c = tc!;
    // Node 0 is the image, run as the DaemonSet runs it (host network, privileged), its subnet file where the test reads it.
    const ds = daemonSet();
    const command = ds.spec.template.spec.containers.find((x: any) => x.name === 'twilld').command as string[];
    agent = await c.net.spawn(0, inImage([
      ...command, '--etcd-endpoints', c.etcd.endpointOn(UNDERLAY.bridgeIp), '--subnet-file', c.subnetFile(0), '--iface', 'eth0',
    ], [`${c.dir}:${c.dir}`, ...(existsSync('/lib/modules') ? ['/lib/modules:/lib/modules:ro'] : [])], null));
    await waitFor('twilld in the image to run', () => {
      if (agent!.exitedWith) throw new Error(`twilld in the image exited (${JSON.stringify(agent!.exitedWith)}): ${agent!.stdout}${agent!.stderr}`);
      return (agent!.stdout + agent!.stderr).includes('twilld running');
    }, 60_000);
    await c.startAgent(1);
    await c.startAgent(2);
    for (let i = 0; i < 3; i++) await c.addPod(i);
    for (let from = 0; from < 3; from++) {
      for (let to = 0; to < 3; to++) {
        if (from === to) continue;
        await waitFor(`pod ${from} to reach pod ${to}`, async () => (await ping(c.podNs(from), c.podIp(to), { count: 1, timeoutMs: 1500 })).received === 1, 20_000, 200);
      }
    }
    const devices = await c.net.ip(0, ['-d', 'link', 'show', 'flannel.1']);
    expect(devices, 'the image\'s twilld made the vxlan device').to.match(/vxlan id 1/);
  });

  it('installs twill-cni with the DaemonSet\'s install-cni script, and that plugin attaches a pod to the image\'s node', async () => {
    const c = tc!;
    for (const p of ['bridge', 'host-local']) {
      if (!existsSync(path.join(REFERENCE_PLUGINS, p))) throw new Error(`${REFERENCE_PLUGINS}/${p} is missing: apt-get install containernetworking-plugins`);
    }
    const ds = daemonSet();
    const cm = manifests().find((d) => d.kind === 'ConfigMap');
    const init = ds.spec.template.spec.initContainers.find((x: any) => x.name === 'install-cni');
    // The "host" directories the init container mounts, under the test's work dir.
    const host = path.join(work, 'host');
    const mounts: string[] = [];
    for (const m of init.volumeMounts as { mountPath: string }[]) {
      if (m.mountPath === '/etc/twill/cfg') continue;
      mkdirSync(path.join(host, m.mountPath), { recursive: true });
      mounts.push(`${path.join(host, m.mountPath)}:${m.mountPath}`);
    }
    mkdirSync(path.join(work, 'cfg'));
    writeFileSync(path.join(work, 'cfg/cni-conf.json'), cm.data['cni-conf.json']);
    mounts.push(`${path.join(work, 'cfg')}:/etc/twill/cfg:ro`);
    expect(init.image, 'the init container runs the DaemonSet\'s image').to.equal(ds.spec.template.spec.containers[0].image);
    const installed = await run(inImage([...init.command, ...init.args], mounts, null));
    expect(installed.code, installed.stdout + installed.stderr).to.equal(0);

    // What the wrapper /opt/cni/bin/twill-cni runs, found where the script put it.
    const wrapper = readFileSync(path.join(host, 'host/opt/cni/bin/twill-cni'), 'utf8');
    const m = /exec (\/opt\/twill\/cni\/node) (\/opt\/twill\/cni\/\S+)/.exec(wrapper);
    expect(m, wrapper).to.not.equal(null);
    const nodeBin = path.join(host, 'host', m![1]);
    const pluginJs = path.join(host, 'host', m![2]);
    expect(JSON.parse(readFileSync(path.join(host, 'host/etc/cni/net.d/10-twill.conflist'), 'utf8')).plugins[0].type).to.equal('twill-cni');

    const podNs = `${c.net.prefix}${c.net.id}-p9`;
    await addNetns(podNs);
    const conf = {
      cniVersion: '1.0.0', name: 'cbr0', type: 'twill-cni',
      subnetFile: c.subnetFile(0), dataDir: path.join(work, 'cni-data'), ipam: { dataDir: path.join(work, 'ipam') },
    };
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: 'ADD', CNI_CONTAINERID: `img-${c.net.id}`, CNI_NETNS: `/run/netns/${podNs}`, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_PLUGINS };
    const add = await run(['ip', 'netns', 'exec', c.nodeNs(0), nodeBin, pluginJs], { env, input: JSON.stringify(conf) });
    expect(add.code, add.stdout + add.stderr).to.equal(0);
    const result = JSON.parse(add.stdout) as { ips: { address: string }[] };
    const lease = c.lease(0);
    expect(result.ips[0].address.split('/')[0].split('.').slice(0, 3).join('.'), 'an address from the node\'s lease').to.equal(lease.subnet.split('.').slice(0, 3).join('.'));
    for (const to of [1, 2]) {
      await waitFor(`the new pod to reach pod ${to}`, async () => (await ping(podNs, c.podIp(to), { count: 1, timeoutMs: 1500 })).received === 1, 20_000, 200);
    }
    const del = await run(['ip', 'netns', 'exec', c.nodeNs(0), nodeBin, pluginJs], { env: { ...env, CNI_COMMAND: 'DEL' }, input: JSON.stringify(conf) });
    expect(del.code, del.stdout + del.stderr).to.equal(0);
  });
});

