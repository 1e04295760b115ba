import { expect } from 'chai';
import { spawnSync } from 'child_process';
import { readFileSync } from 'fs';
import * as path from 'path';
import { UsageError, parseDaemonFlags, type DaemonFlags, type FlagsOutcome } from '../../cmd/flags';

const VERSION = '1.2.3-test';

/** Parses argv and env, expecting flags to run with. */
function run(argv: readonly string[], env: NodeJS.ProcessEnv = {}): DaemonFlags {
  const outcome = parseDaemonFlags(argv, env, VERSION);
  if (outcome.kind !== 'run') throw new Error(`expected flags to run with, got ${JSON.stringify(outcome)}`);
  return outcome.flags;
}

/** Runs `fn`, expecting a UsageError; returns it. */
function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('expected a UsageError, but nothing was thrown');
}

/** Runs `fn` with process.stdout captured; returns what it wrote and its result. */
function capturingStdout<T>(fn: () => T): { out: string; result: T } {
  const write = process.stdout.write;
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    const result = fn();
    return { out, result };
  } finally {
    process.stdout.write = write;
  }
}

describe('twilld flags', () => {
  describe('defaults', () => {
    // flanneld's defaults (etcd mode), from its flag definitions and DESIGN §4.
    const flanneld: Partial<DaemonFlags> = {
      etcdEndpoints: ['http://127.0.0.1:4001', 'http://127.0.0.1:2379'],
      etcdPrefix: '/coreos.com/network',
      etcdKeyfile: undefined,
      etcdCertfile: undefined,
      etcdCafile: undefined,
      etcdUsername: undefined,
      etcdPassword: undefined,
      iface: [],
      ifaceRegex: [],
      ifaceCanReach: undefined,
      publicIp: undefined,
      subnetFile: '/run/flannel/subnet.env',
      subnetLeaseRenewMargin: 60,
      subnetLeaseTtl: 24 * 60 * 60,
      ipMasq: false,
      iptablesResync: 5,
      iptablesForwardRules: true,
      healthzPort: 0,
    };
    for (const [key, value] of Object.entries(flanneld)) {
      it(`gives ${key} flanneld's default, ${JSON.stringify(value)}`, () => {
        expect(run([], {})[key as keyof DaemonFlags]).to.deep.equal(value);
      });
    }

    it("listens for health checks on 127.0.0.1 rather than flanneld's 0.0.0.0, and says so in the help", () => {
      expect(run([]).healthzIp).to.equal('127.0.0.1');
      const { out } = capturingStdout(() => parseDaemonFlags(['--help'], {}, VERSION));
      expect(out).to.match(/flanneld: 0\.0\.0\.0/);
    });

    it("gives twill's own flags their defaults", () => {
      const f = run([]);
      expect({ repairInterval: f.repairInterval, logFormat: f.logFormat, logLevel: f.logLevel }).to.deep.equal({ repairInterval: 5, logFormat: 'text', logLevel: 'info' });
    });

    it('turns the tunnel guard on unless told otherwise, by flag or FLANNELD_TUNNEL_GUARD', () => {
      expect(run([]).tunnelGuard).to.equal(true);
      expect(run(['--tunnel-guard=false']).tunnelGuard).to.equal(false);
      expect(run(['-tunnel-guard=0']).tunnelGuard).to.equal(false);
      expect(run([], { FLANNELD_TUNNEL_GUARD: 'false' }).tunnelGuard).to.equal(false);
      expect(run(['--tunnel-guard'], { FLANNELD_TUNNEL_GUARD: 'false' }).tunnelGuard).to.equal(true);
    });
  });

  describe('command line', () => {
    const cases: { name: string; argv: string[]; expected: Partial<DaemonFlags> }[] = [
      { name: 'reads --iface NAME', argv: ['--iface', 'eth0'], expected: { iface: ['eth0'] } },
      { name: "reads Go's -iface=NAME", argv: ['-iface=eth0'], expected: { iface: ['eth0'] } },
      { name: "reads Go's -iface NAME", argv: ['-iface', 'eth0'], expected: { iface: ['eth0'] } },
      { name: 'reads --iface=NAME', argv: ['--iface=eth0'], expected: { iface: ['eth0'] } },
      { name: 'keeps every --iface, in order', argv: ['--iface', 'eth1', '-iface=10.0.0.5', '--iface=eth0'], expected: { iface: ['eth1', '10.0.0.5', 'eth0'] } },
      { name: 'keeps every --iface-regex, in order', argv: ['--iface-regex', '^eth[0-9]{1,2}$', '-iface-regex=^10\\.'], expected: { ifaceRegex: ['^eth[0-9]{1,2}$', '^10\\.'] } },
      { name: "reads Go's --ip-masq=false", argv: ['--ip-masq=false'], expected: { ipMasq: false } },
      { name: "reads Go's -ip-masq=true", argv: ['-ip-masq=true'], expected: { ipMasq: true } },
      { name: 'reads a bare --ip-masq as true', argv: ['--ip-masq'], expected: { ipMasq: true } },
      { name: "reads a bare Go -ip-masq as true", argv: ['-ip-masq'], expected: { ipMasq: true } },
      { name: 'reads a bare --ip-masq followed by another flag as true', argv: ['--ip-masq', '--iface', 'eth0'], expected: { ipMasq: true, iface: ['eth0'] } },
      { name: "reads Go's other spellings of false", argv: ['--ip-masq=0', '--iptables-forward-rules=F'], expected: { ipMasq: false, iptablesForwardRules: false } },
      { name: "reads Go's other spellings of true", argv: ['--ip-masq=1', '--iptables-forward-rules=TRUE'], expected: { ipMasq: true, iptablesForwardRules: true } },
      { name: 'reads whole numbers', argv: ['--subnet-lease-renew-margin=30', '-subnet-lease-ttl', '7200', '--healthz-port', '8471'], expected: { subnetLeaseRenewMargin: 30, subnetLeaseTtl: 7200, healthzPort: 8471 } },
      {
        name: 'splits --etcd-endpoints at commas, trimming spaces',
        argv: ['--etcd-endpoints', 'https://etcd-1:2379, https://etcd-2:2379,'],
        expected: { etcdEndpoints: ['https://etcd-1:2379', 'https://etcd-2:2379'] },
      },
      {
        name: 'takes the word after a flag as its value even when it starts with a dash, as Go does',
        argv: ['--etcd-password', '-secret', '-etcd-username', '--admin', '--iface-regex', '-x'],
        expected: { etcdPassword: '-secret', etcdUsername: '--admin', ifaceRegex: ['-x'] },
      },
      {
        name: 'reads every string flag',
        argv: [
          '--etcd-prefix=/example.com/network', '--etcd-keyfile=/k.pem', '--etcd-certfile=/c.pem', '--etcd-cafile=/ca.pem',
          '--iface-can-reach=198.18.0.1', '--public-ip=198.18.0.3', '--subnet-file=/tmp/subnet.env', '--healthz-ip=0.0.0.0',
          '--log-format=json', '--log-level=debug',
        ],
        expected: {
          etcdPrefix: '/example.com/network', etcdKeyfile: '/k.pem', etcdCertfile: '/c.pem', etcdCafile: '/ca.pem',
          ifaceCanReach: '198.18.0.1', publicIp: '198.18.0.3', subnetFile: '/tmp/subnet.env', healthzIp: '0.0.0.0',
          logFormat: 'json', logLevel: 'debug',
        },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        expect(run(c.argv)).to.deep.include(c.expected);
      });
    }
  });

  describe('FLANNELD_* environment variables', () => {
    it('apply when the flag is absent, one for each kind of flag', () => {
      const f = run([], {
        FLANNELD_ETCD_PREFIX: '/example.com/network',
        FLANNELD_IFACE: 'eth1',
        FLANNELD_SUBNET_LEASE_RENEW_MARGIN: '30',
        FLANNELD_IP_MASQ: 'true',
        FLANNELD_IPTABLES_FORWARD_RULES: 'false',
        FLANNELD_ETCD_ENDPOINTS: 'http://10.0.0.1:2379,http://10.0.0.2:2379',
      });
      expect(f).to.deep.include({
        etcdPrefix: '/example.com/network',
        iface: ['eth1'],
        subnetLeaseRenewMargin: 30,
        ipMasq: true,
        iptablesForwardRules: false,
        etcdEndpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
      });
    });

    it('lose to the command line', () => {
      const env = { FLANNELD_IP_MASQ: 'true', FLANNELD_IFACE: 'eth1', FLANNELD_SUBNET_LEASE_RENEW_MARGIN: '30', FLANNELD_LOG_FORMAT: 'xml' };
      const f = run(['--ip-masq=false', '-iface=eth0', '--subnet-lease-renew-margin', '10', '--log-format', 'json'], env);
      expect(f).to.deep.include({ ipMasq: false, iface: ['eth0'], subnetLeaseRenewMargin: 10, logFormat: 'json' });
    });

    it('are ignored when empty, as flanneld ignores them', () => {
      const f = run([], { FLANNELD_IP_MASQ: '', FLANNELD_ETCD_PREFIX: '', FLANNELD_SUBNET_LEASE_TTL: '', FLANNELD_IFACE: '' });
      expect(f).to.deep.include({ ipMasq: false, etcdPrefix: '/coreos.com/network', subnetLeaseTtl: 86400, iface: [] });
    });

    it('give a list of interfaces in FLANNELD_IFACE, separated by commas', () => {
      expect(run([], { FLANNELD_IFACE: 'eth0, 10.0.0.5 ,eth1' }).iface).to.deep.equal(['eth0', '10.0.0.5', 'eth1']);
    });

    it('give one regex in FLANNELD_IFACE_REGEX, commas and all, as flanneld reads it', () => {
      expect(run([], { FLANNELD_IFACE_REGEX: '^eth[0-9]{1,2}$' }).ifaceRegex).to.deep.equal(['^eth[0-9]{1,2}$']);
    });

    it('are read from the env argument, not from process.env', () => {
      process.env.FLANNELD_ETCD_PREFIX = '/from-process-env';
      try {
        expect(run([], {}).etcdPrefix).to.equal('/coreos.com/network');
      } finally {
        delete process.env.FLANNELD_ETCD_PREFIX;
      }
    });
  });

  describe('refuses', () => {
    const cases: { name: string; argv: string[]; env?: NodeJS.ProcessEnv; names: string; message?: RegExp }[] = [
      { name: 'a lease TTL that is not a number', argv: ['--subnet-lease-ttl', 'abc'], names: '--subnet-lease-ttl', message: /whole number, not "abc"/ },
      { name: 'a lease TTL in exponent form', argv: ['--subnet-lease-ttl=1e3'], names: '--subnet-lease-ttl', message: /whole number/ },
      { name: 'a lease TTL of zero', argv: ['--subnet-lease-ttl=0'], names: '--subnet-lease-ttl', message: /positive/ },
      { name: 'a log format other than text or json', argv: ['--log-format', 'xml'], names: '--log-format', message: /text or json, not "xml"/ },
      { name: 'an unknown log level', argv: ['--log-level=trace'], names: '--log-level', message: /"trace"/ },
      { name: 'FLANNELD_IP_MASQ=maybe', argv: [], env: { FLANNELD_IP_MASQ: 'maybe' }, names: 'FLANNELD_IP_MASQ', message: /true or false, not "maybe"/ },
      { name: '--ip-masq=maybe', argv: ['--ip-masq=maybe'], names: '--ip-masq', message: /true or false, not "maybe"/ },
      { name: 'FLANNELD_LOG_FORMAT=xml', argv: [], env: { FLANNELD_LOG_FORMAT: 'xml' }, names: 'FLANNELD_LOG_FORMAT', message: /"xml"/ },
      { name: 'FLANNELD_SUBNET_LEASE_TTL=24h', argv: [], env: { FLANNELD_SUBNET_LEASE_TTL: '24h' }, names: 'FLANNELD_SUBNET_LEASE_TTL', message: /"24h"/ },
      { name: 'a renew margin of zero (as flanneld does)', argv: ['--subnet-lease-renew-margin=0'], names: '--subnet-lease-renew-margin', message: /positive/ },
      { name: 'FLANNELD_SUBNET_LEASE_RENEW_MARGIN=-5', argv: [], env: { FLANNELD_SUBNET_LEASE_RENEW_MARGIN: '-5' }, names: 'FLANNELD_SUBNET_LEASE_RENEW_MARGIN' },
      { name: 'a health port above 65535', argv: ['--healthz-port', '70000'], names: '--healthz-port', message: /0\.\.65535/ },
      { name: 'a repair interval of zero', argv: ['--repair-interval=0'], names: '--repair-interval' },
      { name: '--tunnel-guard=off', argv: ['--tunnel-guard=off'], names: '--tunnel-guard', message: /true or false, not "off"/ },
      { name: 'an etcd prefix that does not start with /', argv: ['--etcd-prefix', 'coreos.com/network'], names: '--etcd-prefix', message: /start with "\/"/ },
      { name: 'an unknown flag', argv: ['--bogus'], names: '--bogus', message: /unknown option/ },
      { name: "an unknown flag in Go's spelling", argv: ['-bogus=1'], names: '--bogus' },
      { name: 'a flag without its value', argv: ['--iface'], names: '--iface', message: /argument missing/ },
      { name: 'a stray argument', argv: ['eth0'], names: 'too many arguments' },
    ];
    for (const c of cases) {
      it(`${c.name}: a UsageError naming ${c.names}`, () => {
        const err = usageError(() => parseDaemonFlags(c.argv, c.env ?? {}, VERSION));
        expect(err.message).to.include(c.names);
        if (c.message) expect(err.message).to.match(c.message);
      });
    }
  });

  describe('--kube-subnet-mgr', () => {
    it("reads flanneld's Kubernetes flags, their defaults and the Node's name from NODE_NAME", () => {
      const f = run(['--kube-subnet-mgr'], { NODE_NAME: 'n1' });
      expect(f).to.include({ kubeSubnetMgr: true, kubeAnnotationPrefix: 'flannel.alpha.coreos.com', netConfigPath: '/etc/kube-flannel/net-conf.json', kubeApiUrl: undefined, kubeconfigFile: undefined });
      expect(f.nodeIdentity).to.deep.equal({ nodeName: 'n1' });
      expect(f.setNodeNetworkUnavailable, "flanneld's default").to.equal(true);
      expect(run(['--kube-subnet-mgr', '--set-node-network-unavailable=false'], { NODE_NAME: 'n1' }).setNodeNetworkUnavailable).to.equal(false);
      expect(run([], {}).kubeSubnetMgr).to.equal(false);
    });

    it('takes the Pod instead of NODE_NAME, and every flag from FLANNELD_*', () => {
      const f = run([], {
        FLANNELD_KUBE_SUBNET_MGR: 'true', FLANNELD_KUBECONFIG_FILE: '/k', FLANNELD_KUBE_API_URL: 'https://10.0.0.1:6443',
        FLANNELD_KUBE_ANNOTATION_PREFIX: 'example.com/net', FLANNELD_NET_CONFIG_PATH: '/n.json', POD_NAME: 'p', POD_NAMESPACE: 'kube-flannel',
      });
      expect(f).to.include({ kubeconfigFile: '/k', kubeApiUrl: 'https://10.0.0.1:6443', kubeAnnotationPrefix: 'example.com/net', netConfigPath: '/n.json' });
      expect(f.nodeIdentity).to.deep.equal({ podName: 'p', podNamespace: 'kube-flannel' });
    });

    const cases: { name: string; argv: string[]; env?: NodeJS.ProcessEnv; message: RegExp }[] = [
      { name: 'no NODE_NAME and no POD_NAME/POD_NAMESPACE', argv: ['--kube-subnet-mgr'], env: { POD_NAME: 'p' }, message: /set NODE_NAME .*POD_NAME and POD_NAMESPACE must be set/ },
      { name: 'a prefix flanneld refuses', argv: ['--kube-subnet-mgr', '--kube-annotation-prefix', 'a/b/c'], env: { NODE_NAME: 'n' }, message: /--kube-annotation-prefix "a\/b\/c" may contain at most one "\/"/ },
      { name: 'a kube flag without --kube-subnet-mgr', argv: ['--kubeconfig-file', '/k'], message: /--kubeconfig-file applies only with --kube-subnet-mgr/ },
      { name: 'an etcd flag with --kube-subnet-mgr', argv: ['--kube-subnet-mgr', '--etcd-endpoints', 'http://e:2379'], env: { NODE_NAME: 'n' }, message: /--etcd-endpoints applies only in etcd mode/ },
      { name: 'an API URL that is not one', argv: ['--kube-subnet-mgr', '--kube-api-url', 'api:6443'], env: { NODE_NAME: 'n' }, message: /--kube-api-url must be an http:\/\/ or https:\/\/ URL/ },
    ];
    for (const c of cases) {
      it(`refuses ${c.name}`, () => {
        expect(usageError(() => parseDaemonFlags(c.argv, c.env ?? {}, VERSION)).message).to.match(c.message);
      });
    }
  });

  describe('--help and --version', () => {
    const cases: { argv: string[]; output: RegExp }[] = [
      { argv: ['--help'], output: /^Usage: twilld/ },
      { argv: ['-h'], output: /^Usage: twilld/ },
      { argv: ['-help'], output: /^Usage: twilld/ },
      { argv: ['--version'], output: new RegExp(`^${VERSION.replace(/\./g, '\\.')}\\n$`) },
      { argv: ['-version'], output: new RegExp(`^${VERSION.replace(/\./g, '\\.')}\\n$`) },
    ];
    for (const c of cases) {
      it(`${c.argv.join(' ')} prints and asks to exit with 0`, () => {
        const { out, result } = capturingStdout((): FlagsOutcome => parseDaemonFlags(c.argv, {}, VERSION));
        expect(result).to.deep.equal({ kind: 'exit', code: 0 });
        expect(out).to.match(c.output);
      });
    }

    it('the help lists every flanneld flag with its environment variable', () => {
      const { out } = capturingStdout(() => parseDaemonFlags(['--help'], {}, VERSION));
      const names = [
        'etcd-endpoints', 'etcd-prefix', 'etcd-keyfile', 'etcd-certfile', 'etcd-cafile', 'etcd-username', 'etcd-password',
        'iface', 'iface-regex', 'iface-can-reach', 'public-ip', 'subnet-file', 'subnet-lease-renew-margin', 'ip-masq',
        'iptables-resync', 'iptables-forward-rules', 'healthz-ip', 'healthz-port', 'version',
      ];
      for (const name of names) {
        expect(out, name).to.include(`--${name}`);
        if (name !== 'version') expect(out.replace(/\s+/g, ' '), name).to.include(`FLANNELD_${name.toUpperCase().replace(/-/g, '_')}`);
      }
    });
  });

  describe('the twilld binary', function () {
    this.timeout(30_000);
    const daemon = path.join(__dirname, '../../cmd/twilld.js');
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '../../../package.json'), 'utf8')) as { version: string };

    /** Runs the built daemon with `args`, without any FLANNELD_* variable from this process. */
    function twilld(args: string[], extraEnv: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
      const env: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_')) env[k] = v;
      const r = spawnSync(process.execPath, [daemon, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 20_000 });
      if (r.error) throw r.error;
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    }

    it('exits 2 with the fault and the usage on stderr when a flag is bad', () => {
      const r = twilld(['--bogus']);
      expect(r.status).to.equal(2);
      expect(r.stderr).to.match(/^twilld: unknown option '--bogus'/);
      expect(r.stderr).to.include('Usage: twilld').and.to.include('--etcd-endpoints');
      expect(r.stdout).to.equal('');
    });

    it('exits 2 naming the variable when a FLANNELD_* value is bad', () => {
      const r = twilld([], { FLANNELD_SUBNET_LEASE_TTL: 'abc' });
      expect(r.status).to.equal(2);
      expect(r.stderr).to.match(/^twilld: FLANNELD_SUBNET_LEASE_TTL must be a whole number/);
    });

    it('exits 2 with the usage when --kube-subnet-mgr cannot tell which Node it runs on', () => {
      const r = twilld(['--kube-subnet-mgr']);
      expect(r.status).to.equal(2);
      expect(r.stderr).to.match(/^twilld: --kube-subnet-mgr needs the Node's name: set NODE_NAME/);
      expect(r.stderr).to.include('Usage: twilld').and.to.include('--net-config-path');
    });

    it('exits 2 naming the problem when --kube-subnet-mgr has no API server to talk to', () => {
      const r = twilld(['--kube-subnet-mgr'], { NODE_NAME: 'n1', KUBERNETES_SERVICE_HOST: '', KUBERNETES_SERVICE_PORT: '' });
      expect(r.status).to.equal(2);
      expect(r.stderr).to.match(/^twilld: no Kubernetes API to talk to: give --kubeconfig-file or --kube-api-url/);
    });

    it(`prints the package.json version and exits 0 on --version`, () => {
      const r = twilld(['--version']);
      expect(r.status).to.equal(0);
      expect(r.stdout.trim()).to.equal(pkg.version);
    });

    it('prints the usage and exits 0 on --help', () => {
      const r = twilld(['--help']);
      expect(r.status).to.equal(0);
      expect(r.stdout).to.match(/^Usage: twilld/);
    });
  });
});
