/**
 * The files in manifests/ against the code they deploy: every YAML document
 * parses; the DaemonSet's selector, privileges, volumes, variables and
 * probes fit together; every `--flag` and `FLANNELD_*` variable is one the
 * built twilld lists in its --help; the CNI install script installs a plugin
 * that runs from its copied files alone; every example network config is
 * one twilld accepts; the systemd unit has the keys a restart-safe agent needs.
 */
import { expect } from 'chai';
import { execFileSync, spawn, spawnSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadAll } from 'js-yaml';
import { parseNetworkConfig } from '../../lib/config';
import { KNOWN_BACKEND_TYPES, backendFactory } from '../../backends';
import { SUPPORTED_VERSIONS } from '../../lib/cni/net-conf';
import { parseDaemonFlags } from '../../cmd/flags';

const REPO = path.resolve(__dirname, '../../..');
const MANIFESTS = path.join(REPO, 'manifests');
const TWILLD = path.resolve(__dirname, '../../cmd/twilld.js');

/** A parsed YAML object: the tests walk Kubernetes objects whose shape they check as they go. */
type Obj = Record<string, any>;

/** Example configs naming a backend this build does not implement yet (the README says so). */
function filesUnder(dir: string, ext: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p, ext) : e.name.endsWith(ext) ? [p] : [];
  });
}

/** twilld's flags, from the built daemon's own --help. */
function twilldFlags(): Set<string> {
  const help = execFileSync(process.execPath, [TWILLD, '--help'], { encoding: 'utf8' });
  const flags = new Set([...help.matchAll(/^\s+--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]));
  if (flags.size < 10) throw new Error(`could not read twilld's flags from --help:\n${help}`);
  return flags;
}

/** The flag a FLANNELD_* variable stands for, e.g. FLANNELD_ETCD_ENDPOINTS → etcd-endpoints. */
function flagOfEnv(name: string): string | undefined {
  const m = /^FLANNELD_([A-Z0-9_]+)$/.exec(name);
  return m ? m[1].toLowerCase().replace(/_/g, '-') : undefined;
}

/** `--name` or `--name=value` arguments, as flag names. */
function flagsIn(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith('-')).map((a) => a.replace(/^--?/, '').split('=')[0]);
}

/** Parses a network config and validates its backend settings, as twilld does at start. */
function checkNetworkConfig(text: string, what: string): void {
  const config = parseNetworkConfig(text, KNOWN_BACKEND_TYPES);
  expect(config.warnings, `${what}: warnings`).to.deep.equal([]);
  backendFactory(config.backend.type).validate(config.backend);
}

describe('manifests/', () => {
  let flags: Set<string>;
  before(() => {
    flags = twilldFlags();
  });

  it('reads twilld\'s real flags from the built daemon', () => {
    expect(flags).to.include('etcd-endpoints').and.to.include('healthz-ip').and.to.include('iface');
  });

  describe('every YAML file', () => {
    const files = filesUnder(MANIFESTS, '.yaml').concat(filesUnder(MANIFESTS, '.yml'));

    it('exists (kubernetes/twill.yaml at least)', () => {
      expect(files.map((f) => path.relative(MANIFESTS, f))).to.include('kubernetes/twill.yaml');
    });

    for (const file of files) {
      it(`${path.relative(MANIFESTS, file)} parses into Kubernetes objects with apiVersion, kind and metadata.name`, () => {
        const docs = loadAll(readFileSync(file, 'utf8')).filter((d) => d !== null && d !== undefined) as Obj[];
        expect(docs).not.to.be.empty;
        for (const d of docs) {
          expect(d.apiVersion, file).to.be.a('string');
          expect(d.kind, file).to.be.a('string');
          expect(d.metadata?.name, file).to.be.a('string');
        }
      });
    }
  });

  describe('kubernetes/twill.yaml', () => {
    let docs: Obj[];
    let ds: Obj;
    let cm: Obj;
    let pod: Obj;
    let twilld: Obj;
    let args: string[];
    let env: Map<string, Obj>;

    before(() => {
      docs = loadAll(readFileSync(path.join(MANIFESTS, 'kubernetes/twill.yaml'), 'utf8')).filter(Boolean) as Obj[];
      const daemonSets = docs.filter((d) => d.kind === 'DaemonSet');
      expect(daemonSets, 'DaemonSets').to.have.length(1);
      ds = daemonSets[0];
      cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'twill-cfg')!;
      expect(cm, 'ConfigMap twill-cfg').to.exist;
      pod = ds.spec.template.spec;
      twilld = pod.containers.find((c: Obj) => c.name === 'twilld');
      expect(twilld, 'container twilld').to.exist;
      args = [...(twilld.command ?? []), ...(twilld.args ?? [])];
      env = new Map((twilld.env ?? []).map((e: Obj) => [e.name, e]));
    });

    it('is an apps/v1 DaemonSet whose selector matches its pod template\'s labels', () => {
      expect(ds.apiVersion).to.equal('apps/v1');
      const selector: Obj = ds.spec.selector.matchLabels;
      expect(selector).to.not.be.empty;
      expect(ds.spec.template.metadata.labels).to.include(selector);
      expect(ds.metadata.namespace).to.equal(cm.metadata.namespace);
    });

    it('runs in the host network namespace, privileged, on every node whatever its taints, at node-critical priority', () => {
      expect(pod.hostNetwork).to.equal(true);
      expect(twilld.securityContext?.privileged).to.equal(true);
      expect(pod.tolerations).to.deep.include({ operator: 'Exists' });
      expect(pod.priorityClassName).to.equal('system-node-critical');
      // system-node-critical is only admitted in kube-system by default.
      expect(ds.metadata.namespace).to.equal('kube-system');
    });

    it('mounts only volumes it declares, and declares none it does not mount', () => {
      const volumes = new Set<string>(pod.volumes.map((v: Obj) => v.name));
      const mounted = new Set<string>();
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        for (const m of c.volumeMounts ?? []) {
          expect(volumes, `${c.name} mounts ${m.name}`).to.include(m.name);
          mounted.add(m.name);
        }
      }
      expect([...volumes].filter((v) => !mounted.has(v)), 'unmounted volumes').to.deep.equal([]);
    });

    it('gives twilld /run/flannel, /dev/net/tun, /lib/modules read-only and the etcd TLS files', () => {
      const volumes = new Map<string, Obj>(pod.volumes.map((v: Obj) => [v.name, v]));
      const mountAt = (p: string): Obj => {
        const m = twilld.volumeMounts.find((x: Obj) => x.mountPath === p);
        expect(m, `a mount at ${p}`).to.exist;
        return { mount: m, volume: volumes.get(m.name)! };
      };
      expect(mountAt('/run/flannel').volume.hostPath.path).to.equal('/run/flannel');
      expect(mountAt('/dev/net/tun').volume.hostPath).to.include({ path: '/dev/net/tun', type: 'CharDevice' });
      const mods = mountAt('/lib/modules');
      expect(mods.mount.readOnly).to.equal(true);
      expect(mods.volume.hostPath.path).to.equal('/lib/modules');
      const etcd = mountAt('/etc/twill/etcd');
      expect(etcd.mount.readOnly).to.equal(true);
      expect(etcd.volume.secret.secretName).to.be.a('string');
      for (const f of ['etcd-cafile', 'etcd-certfile', 'etcd-keyfile']) {
        const a = args.find((x) => x.startsWith(`--${f}=`));
        expect(a, `--${f}`).to.match(/^--[a-z-]+=\/etc\/twill\/etcd\/\S+$/);
      }
      expect(args).to.include('--subnet-file=/run/flannel/subnet.env');
      expect(mountAt('/var/cache/twill').volume.hostPath, 'the code cache outlives the container').to.include({ path: '/var/cache/twill', type: 'DirectoryOrCreate' });
    });

    it('runs twilld, with only flags twilld has', () => {
      expect(twilld.command.join(' ')).to.match(/(^|\/)twilld(\.js)?$/);
      const unknown = flagsIn(twilld.args).filter((f) => !flags.has(f));
      expect(unknown, 'flags twilld does not have').to.deep.equal([]);
      expect(flagsIn(twilld.args)).to.include('etcd-endpoints');
    });

    it('passes args and variables twilld accepts, values included (with sample ConfigMap and downward-API values)', () => {
      const sample: Record<string, string> = { ETCD_ENDPOINTS: cm.data['etcd-endpoints'], FLANNELD_IFACE: cm.data.iface, NODE_IP: '192.0.2.10' };
      const expanded = (twilld.args as string[]).map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, v: string) => sample[v] ?? `$(${v})`));
      const outcome = parseDaemonFlags(expanded, { FLANNELD_IFACE: sample.FLANNELD_IFACE }, '0.0.0');
      expect(outcome.kind).to.equal('run');
      if (outcome.kind !== 'run') return;
      expect(outcome.flags).to.include({ healthzIp: '192.0.2.10', healthzPort: 9943, ipMasq: true, subnetFile: '/run/flannel/subnet.env' });
      expect(outcome.flags.etcdEndpoints).to.deep.equal(cm.data['etcd-endpoints'].split(','));
      expect(outcome.flags.iface, 'an empty iface in the ConfigMap means "not set"').to.deep.equal([]);
    });

    it('sets only FLANNELD_* variables that are twilld flags, and defines every $(VAR) its args use', () => {
      for (const name of env.keys()) {
        const flag = flagOfEnv(name);
        if (flag !== undefined) expect(flags, `${name}`).to.include(flag);
      }
      for (const a of twilld.args as string[]) {
        for (const m of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) expect(env.has(m[1]), `${a}: $(${m[1]}) is defined`).to.equal(true);
      }
    });

    it('takes every ConfigMap key it refers to from the ConfigMap in this file', () => {
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.configMapKeyRef;
          if (!ref) continue;
          expect(ref.name, e.name).to.equal(cm.metadata.name);
          expect(cm.data, `${e.name}: key ${ref.key}`).to.have.property(ref.key);
        }
      }
      const cfgVolume = pod.volumes.find((v: Obj) => v.configMap);
      expect(cfgVolume.configMap.name).to.equal(cm.metadata.name);
    });

    it('probes /healthz and /readyz on the node IP, where --healthz-ip puts the health server', () => {
      expect(env.get('NODE_IP')?.valueFrom?.fieldRef?.fieldPath).to.equal('status.hostIP');
      expect(args).to.include('--healthz-ip=$(NODE_IP)');
      const port = Number(args.find((a) => a.startsWith('--healthz-port='))!.split('=')[1]);
      expect(port).to.be.greaterThan(0);
      const named = new Map<string, number>((twilld.ports ?? []).map((p: Obj) => [p.name, p.containerPort]));
      const probePort = (probe: Obj): number => (typeof probe.httpGet.port === 'number' ? probe.httpGet.port : named.get(probe.httpGet.port)!);
      expect(twilld.livenessProbe.httpGet.path).to.equal('/healthz');
      expect(twilld.readinessProbe.httpGet.path).to.equal('/readyz');
      expect(probePort(twilld.livenessProbe)).to.equal(port);
      expect(probePort(twilld.readinessProbe)).to.equal(port);
      // Without host the kubelet probes the pod IP, which hostNetwork makes the node IP.
      expect(twilld.livenessProbe.httpGet.host).to.equal(undefined);
    });

    it('runs the same image in every container', () => {
      const images = new Set([...pod.containers, ...(pod.initContainers ?? [])].map((c: Obj) => c.image));
      expect(images.size).to.equal(1);
    });

    it('holds a net-conf.json that twilld accepts', () => {
      checkNetworkConfig(cm.data['net-conf.json'], 'net-conf.json');
    });

    it('holds a cni-conf.json conflist whose first plugin is twill-cni', () => {
      const list = JSON.parse(cm.data['cni-conf.json']) as Obj;
      expect(list.name).to.be.a('string');
      expect(SUPPORTED_VERSIONS).to.include(list.cniVersion);
      expect(list.plugins[0].type).to.equal('twill-cni');
    });

    describe('the install-cni init container', () => {
      let root: string;
      let result: ReturnType<typeof spawnSync>;

      before(() => {
        // Run its script with /host under a temp dir and the image's /opt/twill as this checkout.
        const init = pod.initContainers.find((c: Obj) => c.name === 'install-cni');
        expect(init.command).to.deep.equal(['/bin/sh', '-c']);
        root = mkdtempSync(path.join(os.tmpdir(), 'twill-install-cni-'));
        const script = (init.args[0] as string)
          .replace(/\/host\//g, `${root}/host/`)
          .replace(/\/opt\/twill\/(package\.json|dist\/)/g, `${REPO}/$1`)
          .replace(/\/etc\/twill\/cfg\//g, `${root}/cfg/`);
        for (const m of init.volumeMounts as Obj[]) if (m.mountPath.startsWith('/host/')) mkdirSync(path.join(root, m.mountPath), { recursive: true });
        mkdirSync(path.join(root, 'cfg'));
        writeFileSync(path.join(root, 'cfg/cni-conf.json'), cm.data['cni-conf.json']);
        result = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
        // A second run replaces the first: what a restarted init container does.
        if (result.status === 0) result = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
      });
      after(() => rmSync(root, { recursive: true, force: true }));

      it('succeeds, twice in a row', () => {
        expect(result.status, `${String(result.stdout)}${String(result.stderr)}`).to.equal(0);
      });

      it('writes the conflist and an executable wrapper named after the plugin type', () => {
        const conflist = path.join(root, 'host/etc/cni/net.d/10-twill.conflist');
        expect(readFileSync(conflist, 'utf8')).to.equal(cm.data['cni-conf.json']);
        const wrapper = path.join(root, 'host/opt/cni/bin/twill-cni');
        expect(statSync(wrapper).mode & 0o111).to.not.equal(0);
        expect(readFileSync(wrapper, 'utf8')).to.equal('#!/bin/sh\nexec /opt/twill/cni/node /opt/twill/cni/dist/cmd/twill-cni.js "$@"\n');
      });

      it('leaves one plugin directory behind the cni symlink, holding what the wrapper runs', () => {
        const dir = path.join(root, 'host/opt/twill');
        expect(readdirSync(dir).sort()).to.have.length(2).and.to.include('cni');
        expect(readlinkSync(path.join(dir, 'cni'))).to.match(/^cni\.\w+$/);
        expect(existsSync(path.join(dir, 'cni/node'))).to.equal(true);
        expect(existsSync(path.join(dir, 'cni/dist/cmd/twill-cni.js'))).to.equal(true);
      });

      it('copies a plugin that runs from the copied files alone (VERSION)', () => {
        const cni = path.join(root, 'host/opt/twill/cni');
        const r = spawnSync(path.join(cni, 'node'), [path.join(cni, 'dist/cmd/twill-cni.js')], {
          input: '{"cniVersion":"1.0.0"}',
          env: { CNI_COMMAND: 'VERSION', NODE_PATH: '' },
          encoding: 'utf8',
        });
        expect(r.status, r.stderr).to.equal(0);
        expect(JSON.parse(r.stdout).supportedVersions).to.include('1.0.0');
        const about = spawnSync(path.join(cni, 'node'), [path.join(cni, 'dist/cmd/twill-cni.js')], { env: {}, encoding: 'utf8' });
        const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
        expect(about.stderr, 'the version, read from the copied package.json').to.contain(`twill-cni ${pkg.version}`);
      });
    });
  });

  describe('kubernetes/twill-kube.yaml (--kube-subnet-mgr)', () => {
    let docs: Obj[];
    const one = (kind: string): Obj => {
      const found = docs.filter((d) => d.kind === kind);
      expect(found, kind).to.have.length(1);
      return found[0];
    };
    before(() => {
      docs = loadAll(readFileSync(path.join(MANIFESTS, 'kubernetes/twill-kube.yaml'), 'utf8')).filter(Boolean) as Obj[];
    });

    it('grants exactly the calls twilld makes: get/list/watch nodes, patch nodes/status, get pods', () => {
      const role = one('ClusterRole');
      const rules = (role.rules as Obj[]).map((r) => `${r.apiGroups.join()}|${r.resources.join()}|${[...r.verbs].sort().join()}`).sort();
      expect(rules).to.deep.equal(['|nodes/status|patch', '|nodes|get,list,watch', '|pods|get']);
      const binding = one('ClusterRoleBinding');
      const sa = one('ServiceAccount');
      expect(binding.roleRef).to.deep.equal({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
      expect(binding.subjects).to.deep.equal([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
      expect(one('DaemonSet').spec.template.spec.serviceAccountName).to.equal(sa.metadata.name);
    });

    it('runs twilld with --kube-subnet-mgr, flags it accepts, and NODE_NAME from the downward API', () => {
      const ds = one('DaemonSet');
      const twilld = (ds.spec.template.spec.containers as Obj[]).find((c) => c.name === 'twilld')!;
      const unknown = flagsIn(twilld.args).filter((f) => !flags.has(f));
      expect(unknown, 'flags twilld does not have').to.deep.equal([]);
      const nodeName = (twilld.env as Obj[]).find((e) => e.name === 'NODE_NAME');
      expect(nodeName?.valueFrom?.fieldRef?.fieldPath).to.equal('spec.nodeName');
      const expanded = (twilld.args as string[]).map((a) => a.replace('$(NODE_IP)', '192.0.2.10'));
      const outcome = parseDaemonFlags(expanded, { NODE_NAME: 'node-a' }, '0.0.0');
      expect(outcome.kind).to.equal('run');
      if (outcome.kind !== 'run') return;
      expect(outcome.flags).to.include({ kubeSubnetMgr: true, netConfigPath: '/etc/kube-flannel/net-conf.json', ipMasq: true });
    });

    it('mounts the net-conf ConfigMap as a directory (a subPath mount never sees an edit) holding a config twilld accepts', () => {
      const ds = one('DaemonSet');
      const pod = ds.spec.template.spec;
      const twilld = (pod.containers as Obj[]).find((c) => c.name === 'twilld')!;
      const mount = (twilld.volumeMounts as Obj[]).find((m) => m.mountPath === '/etc/kube-flannel');
      expect(mount, 'a mount at /etc/kube-flannel').to.exist;
      expect(mount!.subPath).to.equal(undefined);
      const volume = (pod.volumes as Obj[]).find((v) => v.name === mount!.name)!;
      const cm = one('ConfigMap');
      expect(volume.configMap.name).to.equal(cm.metadata.name);
      expect(volume.configMap.items).to.deep.include({ key: 'net-conf.json', path: 'net-conf.json' });
      checkNetworkConfig(cm.data['net-conf.json'], 'net-conf.json');
    });
  });

  describe('examples/', () => {
    const files = filesUnder(path.join(MANIFESTS, 'examples'), '.json');

    it('has a config for each backend: vxlan, host-gw, ipip, udp', () => {
      expect(files.map((f) => path.basename(f)).sort()).to.include.members(['host-gw.json', 'ipip.json', 'udp.json', 'vxlan.json']);
    });

    for (const file of files) {
      const name = path.basename(file);
      it(`${name} is a network config twilld accepts`, () => {
        checkNetworkConfig(readFileSync(file, 'utf8'), name);
      });
    }

    it('vxlan.json spells out VNI, Port and DirectRouting', () => {
      const config = parseNetworkConfig(readFileSync(path.join(MANIFESTS, 'examples/vxlan.json'), 'utf8'), KNOWN_BACKEND_TYPES);
      expect(config.backend.settings).to.have.keys('VNI', 'Port', 'DirectRouting');
    });
  });

  describe('systemd/twilld.service', () => {
    /** section → key → values (keys may repeat). */
    let unit: Map<string, Map<string, string[]>>;

    before(() => {
      unit = new Map();
      let section = '';
      for (const raw of readFileSync(path.join(MANIFESTS, 'systemd/twilld.service'), 'utf8').split('\n')) {
        const line = raw.trim();
        if (!line || line.startsWith('#') || line.startsWith(';')) continue;
        const s = /^\[(.+)\]$/.exec(line);
        if (s) {
          section = s[1];
          unit.set(section, new Map());
          continue;
        }
        const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
        expect(kv, `a Key=Value line: ${line}`).to.not.equal(null);
        const keys = unit.get(section)!;
        keys.set(kv![1], [...(keys.get(kv![1]) ?? []), kv![2]]);
      }
    });
    const get = (section: string, key: string): string[] => unit.get(section)?.get(key) ?? [];

    it('starts after the network is online and restarts always', () => {
      expect(get('Unit', 'After').join(' ').split(/\s+/)).to.include('network-online.target');
      expect(get('Unit', 'Wants').join(' ').split(/\s+/)).to.include('network-online.target');
      expect(get('Service', 'Restart')).to.deep.equal(['always']);
      expect(get('Install', 'WantedBy')).to.deep.equal(['multi-user.target']);
    });

    it('gives twilld /var/cache/twill, its own, for the code cache', () => {
      expect(get('Service', 'CacheDirectory')).to.deep.equal(['twill']);
      expect(get('Service', 'CacheDirectoryMode')).to.deep.equal(['0700']);
    });

    it('reads FLANNELD_* settings from an optional /etc/default/twilld', () => {
      expect(get('Service', 'EnvironmentFile')).to.deep.equal(['-/etc/default/twilld']);
    });

    it('stops twilld alone with SIGTERM (KillMode=process), tears nothing down (no ExecStop), and ends the rest after a stop only', () => {
      expect(get('Service', 'KillSignal')).to.deep.equal(['SIGTERM']);
      expect(get('Service', 'KillMode')).to.deep.equal(['process']);
      expect(get('Service', 'ExecStop')).to.deep.equal([]);
      expect(get('Service', 'ExecStopPost')).to.deep.equal(['/opt/twill/manifests/systemd/twilld-stop-post twilld.service']);
      expect(statSync(path.join(MANIFESTS, 'systemd/twilld-stop-post')).mode & 0o111, 'executable').to.not.equal(0);
    });

    it('passes systemd-analyze verify (where systemd-analyze is installed)', function () {
      const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
      if (probe.error) {
        console.log('      skipped: systemd-analyze is not installed');
        this.skip();
      }
      const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-unit-'));
      try {
        // The unit names /opt/twill, where the README installs twill; here it is this checkout.
        const text = readFileSync(path.join(MANIFESTS, 'systemd/twilld.service'), 'utf8').replace(/\/opt\/twill\//g, `${REPO}/`);
        writeFileSync(path.join(dir, 'twilld.service'), text);
        const r = spawnSync('systemd-analyze', ['verify', path.join(dir, 'twilld.service')], { encoding: 'utf8' });
        // verify exits 0 on a setting it ignores, but says so: any output is a finding.
        expect(`${r.stdout}${r.stderr}`.trim()).to.equal('');
        expect(r.status).to.equal(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    describe('twilld-stop-post (ExecStopPost)', () => {
      let dir: string;
      let leftOver: ReturnType<typeof spawn> | undefined;
      before(() => {
        dir = mkdtempSync(path.join(os.tmpdir(), 'twill-stop-post-'));
      });
      afterEach(() => {
        if (leftOver?.pid && leftOver.exitCode === null && leftOver.signalCode === null) process.kill(leftOver.pid, 'SIGKILL');
        leftOver = undefined;
      });
      after(() => rmSync(dir, { recursive: true, force: true }));

      /** Runs the script as systemd would with `job` pending on the unit, an engine-like process left in the cgroup. */
      async function stopPost(job: string | undefined, env: Record<string, string> = {}): Promise<{ alive: boolean; out: string }> {
        leftOver = spawn('sleep', ['60'], { stdio: 'ignore' });
        const procs = path.join(dir, 'cgroup.procs');
        writeFileSync(procs, `${leftOver.pid}\n`);
        const systemctl = path.join(dir, 'systemctl');
        writeFileSync(systemctl, `#!/bin/sh\n${job ? `echo "42 twilld.service ${job} running"` : 'true'}\necho "43 other.service stop waiting"\n`, { mode: 0o755 });
        const r = spawnSync(path.join(MANIFESTS, 'systemd/twilld-stop-post'), ['twilld.service'], {
          env: { PATH: process.env.PATH ?? '', TWILL_SYSTEMCTL: systemctl, TWILL_CGROUP_PROCS: procs, ...env },
          encoding: 'utf8',
        });
        expect(r.status, r.stderr).to.equal(0);
        await new Promise((resolve) => setTimeout(resolve, 100));
        return { alive: leftOver.exitCode === null && leftOver.signalCode === null, out: r.stdout };
      }

      it('leaves the datapath running on `systemctl restart`', async () => {
        const r = await stopPost('restart');
        expect(r.alive).to.equal(true);
        expect(r.out).to.match(/keeps running/);
      });

      it('leaves it running after a crash (Restart=, no job)', async () => {
        expect((await stopPost(undefined)).alive).to.equal(true);
      });

      it('ends it on `systemctl stop`, saying so', async () => {
        const r = await stopPost('stop');
        expect(r.alive).to.equal(false);
        expect(leftOver!.signalCode, 'ended by SIGTERM, not SIGKILL').to.equal('SIGTERM');
        expect(r.out).to.match(/ending its datapath \(pids \d+\)/);
      });

      it('leaves it on `systemctl stop` when TWILL_STOP_KEEPS_DATAPATH=true', async () => {
        expect((await stopPost('stop', { TWILL_STOP_KEEPS_DATAPATH: 'true' })).alive).to.equal(true);
      });
    });

    it('runs twilld by absolute paths, with only flags twilld has', () => {
      const exec = get('Service', 'ExecStart');
      expect(exec).to.have.length(1);
      const argv = exec[0].split(/\s+/);
      expect(argv[0]).to.match(/^\//);
      expect(argv.slice(0, 2).join(' ')).to.match(/(^\/usr\/bin\/twilld|\/usr\/bin\/node \/opt\/twill\/dist\/cmd\/twilld\.js)$/);
      expect(flagsIn(argv.slice(2)).filter((f) => !flags.has(f))).to.deep.equal([]);
    });

    it('ships a twilld.default whose every variable is a twilld flag', () => {
      const text = readFileSync(path.join(MANIFESTS, 'systemd/twilld.default'), 'utf8');
      const names = text.split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => l.split('=')[0]);
      expect(names).to.include('FLANNELD_ETCD_ENDPOINTS');
      for (const n of names) expect(flags, n).to.include(flagOfEnv(n) ?? `(${n} is not FLANNELD_*)`);
      const env = Object.fromEntries(text.split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => [l.split('=')[0], l.slice(l.indexOf('=') + 1)]));
      const outcome = parseDaemonFlags([], env, '0.0.0');
      expect(outcome.kind, 'twilld accepts the values too').to.equal('run');
    });
  });
});
