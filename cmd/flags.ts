/**
 * twilld's command line: flanneld's flags (etcd mode, and Kubernetes mode
 * with --kube-subnet-mgr), each also read from
 * `FLANNELD_<NAME>` (dashes as underscores) when not given on the command
 * line. Go's flag syntax is accepted too (`-iface=eth0`, `--ip-masq=false`).
 * Any bad flag or value is a `UsageError`: the daemon prints it with the
 * usage and exits 2.
 */
import { Command, CommanderError, Option } from 'commander';
import { AnnotationPrefixError, DEFAULT_ANNOTATION_PREFIX, flannelAnnotations } from '../lib/kube/annotations';
import type { NodeIdentity } from '../lib/subnet/kube-manager';
import { FLANNELD_NET_CONF_PATH } from '../lib/subnet/net-conf-file';

export interface DaemonFlags {
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdKeyfile?: string;
  etcdCertfile?: string;
  etcdCafile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
  iface: string[];
  ifaceRegex: string[];
  ifaceCanReach?: string;
  publicIp?: string;
  publicIpv6?: string;
  subnetFile: string;
  subnetLeaseRenewMargin: number;
  subnetLeaseTtl: number;
  ipMasq: boolean;
  iptablesResync: number;
  iptablesForwardRules: boolean;
  healthzIp: string;
  healthzPort: number;
  repairInterval: number;
  tunnelGuard: boolean;
  natBackend: 'auto' | 'nftables' | 'iptables';
  logFormat: 'text' | 'json';
  logLevel: string;
  wireguardKeyFile?: string;
  kubeSubnetMgr: boolean;
  kubeApiUrl?: string;
  kubeconfigFile?: string;
  kubeAnnotationPrefix: string;
  netConfigPath: string;
  setNodeNetworkUnavailable: boolean;
  /** With --kube-subnet-mgr: which Node this is, from $NODE_NAME or $POD_NAME and $POD_NAMESPACE (flanneld reads the same). */
  nodeIdentity?: NodeIdentity;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type FlagsOutcome = { kind: 'run'; flags: DaemonFlags } | { kind: 'exit'; code: number };

interface FlagSpec {
  readonly name: string;
  readonly help: string;
  readonly kind: 'string' | 'list' | 'int' | 'bool';
  readonly def?: string;
  /** For a list read from the environment: the separator between its items (else the value is one item, as in flanneld). */
  readonly envSeparator?: string;
}

const SPECS: readonly FlagSpec[] = [
  { name: 'etcd-endpoints', kind: 'string', def: 'http://127.0.0.1:4001,http://127.0.0.1:2379', help: 'comma-separated list of etcd endpoints' },
  { name: 'etcd-prefix', kind: 'string', def: '/coreos.com/network', help: 'etcd prefix' },
  { name: 'etcd-keyfile', kind: 'string', help: 'SSL key file used to secure etcd communication' },
  { name: 'etcd-certfile', kind: 'string', help: 'SSL certification file used to secure etcd communication' },
  { name: 'etcd-cafile', kind: 'string', help: 'SSL Certificate Authority file used to secure etcd communication' },
  { name: 'etcd-username', kind: 'string', help: 'username for BasicAuth to etcd' },
  { name: 'etcd-password', kind: 'string', help: 'password for BasicAuth to etcd' },
  { name: 'iface', kind: 'list', envSeparator: ',', help: 'interface to use (IP or name) for inter-host communication; repeatable, first match wins' },
  { name: 'iface-regex', kind: 'list', help: 'regex of the IP (IPv4 or IPv6) or name of the interface to use; repeatable' },
  { name: 'iface-can-reach', kind: 'string', help: 'use the interface the route to this address (IPv4 or IPv6) leaves by' },
  { name: 'public-ip', kind: 'string', help: 'IP accessible by other nodes for inter-host communication' },
  { name: 'public-ipv6', kind: 'string', help: 'IPv6 accessible by other nodes for inter-host communication (with EnableIPv6)' },
  { name: 'subnet-file', kind: 'string', def: '/run/flannel/subnet.env', help: 'filename where env variables (subnet, MTU, ...) will be written to' },
  { name: 'subnet-lease-renew-margin', kind: 'int', def: '60', help: 'subnet lease renewal margin, in minutes' },
  { name: 'subnet-lease-ttl', kind: 'int', def: '86400', help: 'subnet lease time to live, in seconds' },
  { name: 'ip-masq', kind: 'bool', def: 'false', help: 'setup IP masquerade rule for traffic destined outside of overlay network' },
  { name: 'iptables-resync', kind: 'int', def: '5', help: 'resync period for NAT/forward rules, in seconds' },
  { name: 'iptables-forward-rules', kind: 'bool', def: 'true', help: 'add forward rules for the pod network' },
  { name: 'healthz-ip', kind: 'string', def: '127.0.0.1', help: 'the IP address for the health server to listen on (flanneld: 0.0.0.0)' },
  { name: 'healthz-port', kind: 'int', def: '0', help: 'the port for the health server to listen on (0 disables it)' },
  { name: 'nat-backend', kind: 'string', def: 'auto', help: 'how to install --ip-masq/forward rules: auto (nftables if nft exists, else iptables), nftables or iptables (twill)' },
  { name: 'repair-interval', kind: 'int', def: '5', help: 'seconds between repairs of the kernel state; a repair reads the kernel when its notifications say twill\'s routes or devices changed, and every 12th reads it anyway (twill)' },
  { name: 'tunnel-guard', kind: 'bool', def: 'true', help: 'accept tunnel packets (vxlan, udp, ipip) only from nodes that hold a lease, with inner sources in their subnet; false removes the filter (twill)' },
  { name: 'log-format', kind: 'string', def: 'text', help: 'log format: text or json (twill)' },
  { name: 'log-level', kind: 'string', def: 'info', help: 'log level: error, warn, info or debug (twill)' },
  { name: 'kube-subnet-mgr', kind: 'bool', def: 'false', help: 'contact the Kubernetes API for subnet assignment instead of etcd' },
  { name: 'kube-api-url', kind: 'string', help: 'Kubernetes API server URL; by default the kubeconfig\'s, or the in-cluster one' },
  { name: 'kubeconfig-file', kind: 'string', help: 'kubeconfig file location; by default the in-cluster config' },
  { name: 'kube-annotation-prefix', kind: 'string', def: DEFAULT_ANNOTATION_PREFIX, help: 'Kubernetes annotation prefix' },
  { name: 'set-node-network-unavailable', kind: 'bool', def: 'true', help: 'set the Node\'s NetworkUnavailable condition to False once running (--kube-subnet-mgr)' },
  { name: 'net-config-path', kind: 'string', def: FLANNELD_NET_CONF_PATH, help: 'path to the network configuration file (--kube-subnet-mgr); twill also follows changes to it' },
  { name: 'wireguard-key-file', kind: 'string', help: 'the wireguard backend\'s private key file, made (mode 0600) when missing; default $WIREGUARD_KEY_FILE, else /run/flannel/wgkey as flanneld (twill)' },
];

/** Flags that take a value: every kind but bool. */
const VALUE_FLAGS = new Set(SPECS.filter((s) => s.kind !== 'bool').map((s) => s.name));

/**
 * Go's flag package accepts `-name`; commander wants `--name`. The word after
 * a flag that takes a value is that value however it looks, as in Go
 * (`--etcd-password -secret`), so it is passed on untouched.
 */
function normaliseGoFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  let isValue = false;
  for (const a of argv) {
    const m: RegExpExecArray | null = isValue ? null : /^--?([a-z][a-z-]+)(=.*)?$/.exec(a);
    out.push(m && !a.startsWith('--') ? `-${a}` : a);
    isValue = m !== null && m[2] === undefined && VALUE_FLAGS.has(m[1]);
  }
  return out;
}

function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function buildCommand(version: string): Command {
  const cmd = new Command('twilld')
    .description('twill overlay network agent (flanneld-compatible: etcd, or Kubernetes with --kube-subnet-mgr)')
    .version(version, '--version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help')
    .allowExcessArguments(false)
    .configureOutput({ writeOut: (s) => process.stdout.write(s), outputError: () => undefined })
    .exitOverride();
  for (const spec of SPECS) {
    const flag = spec.kind === 'bool' ? `--${spec.name} [bool]` : spec.kind === 'list' ? `--${spec.name} <value>` : `--${spec.name} <value>`;
    const opt = new Option(flag, `${spec.help} (env ${envName(spec.name)})`);
    if (spec.kind === 'list') opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    if (spec.def !== undefined) opt.default(spec.kind === 'list' ? [] : spec.def);
    cmd.addOption(opt);
  }
  return cmd;
}

/**
 * Parses argv (without node and script) and the environment. Returns what
 * to do: run with these flags, or exit with a code (after --help/--version).
 */
export function parseDaemonFlags(argv: readonly string[], env: NodeJS.ProcessEnv, version: string): FlagsOutcome {
  const cmd = buildCommand(version);
  try {
    cmd.parse(normaliseGoFlags(argv), { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return { kind: 'exit', code: 0 };
      if (err.code === 'commander.excessArguments') {
        // commander only counts them; say which, since flanneld takes no arguments at all.
        throw new UsageError(`too many arguments: twilld takes only flags, but was given ${cmd.args.map((a) => JSON.stringify(a)).join(' ')}`);
      }
      throw new UsageError(err.message.replace(/^error: /, ''));
    }
    throw err;
  }
  const raw = cmd.opts<Record<string, unknown>>();
  const value = (spec: FlagSpec): { text: unknown; source: string } => {
    const key = camel(spec.name);
    const fromCli = cmd.getOptionValueSource(key) === 'cli';
    const envValue = env[envName(spec.name)];
    // An empty variable counts as unset, as in flanneld.
    if (!fromCli && envValue !== undefined && envValue !== '') {
      const text = spec.kind !== 'list' ? envValue
        : spec.envSeparator === undefined ? [envValue]
        : envValue.split(spec.envSeparator).map((s) => s.trim()).filter(Boolean);
      return { text, source: envName(spec.name) };
    }
    return { text: raw[key], source: `--${spec.name}` };
  };

  const out: Record<string, unknown> = {};
  /** Where each value came from (`--flag` or `FLANNELD_FLAG`), for the messages below. */
  const from: Record<string, string> = {};
  for (const spec of SPECS) {
    const { text, source } = value(spec);
    out[camel(spec.name)] = convert(spec, text, source);
    from[spec.name] = source;
  }
  const flags = out as unknown as DaemonFlags;
  flags.etcdEndpoints = String(out.etcdEndpoints).split(',').map((s) => s.trim()).filter(Boolean);
  check(['auto', 'nftables', 'iptables'].includes(flags.natBackend), `${from['nat-backend']} must be auto, nftables or iptables, not ${JSON.stringify(flags.natBackend)}`);
  check(['text', 'json'].includes(flags.logFormat), `${from['log-format']} must be text or json, not ${JSON.stringify(flags.logFormat)}`);
  check(['error', 'warn', 'info', 'debug'].includes(flags.logLevel), `${from['log-level']} must be error, warn, info or debug, not ${JSON.stringify(flags.logLevel)}`);
  check(flags.etcdPrefix.startsWith('/'), `${from['etcd-prefix']} must start with "/", not ${JSON.stringify(flags.etcdPrefix)}`);
  check(flags.subnetLeaseTtl > 0, `${from['subnet-lease-ttl']} must be a positive number of seconds, not ${flags.subnetLeaseTtl}`);
  check(flags.healthzPort >= 0 && flags.healthzPort <= 65535, `${from['healthz-port']} must be 0..65535, not ${flags.healthzPort}`);
  check(flags.iptablesResync > 0, `${from['iptables-resync']} must be a positive number of seconds, not ${flags.iptablesResync}`);
  check(flags.repairInterval > 0, `${from['repair-interval']} must be a positive number of seconds, not ${flags.repairInterval}`);
  // flanneld refuses 0 too: a lease renewed only as it expires can be lost to another node.
  check(flags.subnetLeaseRenewMargin > 0, `${from['subnet-lease-renew-margin']} must be a positive number of minutes, not ${flags.subnetLeaseRenewMargin}`);
  checkKubeFlags(flags, from, env, (key) => cmd.getOptionValueSource(camel(key)) === 'cli');
  return { kind: 'run', flags };
}

/**
 * Kubernetes mode: the Node's identity as flanneld finds it, a valid
 * annotation prefix, and no flag on the command line that the chosen mode
 * would silently ignore (flanneld ignores them; a user who wrote one meant
 * something by it).
 */
function checkKubeFlags(flags: DaemonFlags, from: Record<string, string>, env: NodeJS.ProcessEnv, onCommandLine: (flag: string) => boolean): void {
  const kubeOnly = ['kube-api-url', 'kubeconfig-file', 'kube-annotation-prefix', 'net-config-path', 'set-node-network-unavailable'];
  const etcdOnly = ['etcd-endpoints', 'etcd-prefix', 'etcd-keyfile', 'etcd-certfile', 'etcd-cafile', 'etcd-username', 'etcd-password', 'subnet-lease-ttl', 'subnet-lease-renew-margin'];
  if (!flags.kubeSubnetMgr) {
    const given = kubeOnly.filter(onCommandLine);
    check(given.length === 0, `--${given[0]} applies only with --kube-subnet-mgr (etcd mode reads the network config from etcd)`);
    return;
  }
  const given = etcdOnly.filter(onCommandLine);
  check(given.length === 0, `--${given[0]} applies only in etcd mode, not with ${from['kube-subnet-mgr']} (the leases are the Nodes' podCIDRs)`);
  try {
    flannelAnnotations(flags.kubeAnnotationPrefix);
  } catch (err) {
    if (err instanceof AnnotationPrefixError) throw new UsageError(err.message.replace('--kube-annotation-prefix', from['kube-annotation-prefix']));
    throw err;
  }
  check(flags.netConfigPath !== '', `${from['net-config-path']} must name the network config file`);
  if (flags.kubeApiUrl !== undefined) {
    check(/^https?:\/\/[^/\s]+/.test(flags.kubeApiUrl), `${from['kube-api-url']} must be an http:// or https:// URL, not ${JSON.stringify(flags.kubeApiUrl)}`);
  }
  if (env.NODE_NAME) {
    flags.nodeIdentity = { nodeName: env.NODE_NAME };
  } else {
    check(Boolean(env.POD_NAME && env.POD_NAMESPACE),
      `${from['kube-subnet-mgr']} needs the Node's name: set NODE_NAME (the downward API's spec.nodeName), or POD_NAME and POD_NAMESPACE (env variables POD_NAME and POD_NAMESPACE must be set)`);
    flags.nodeIdentity = { podName: env.POD_NAME!, podNamespace: env.POD_NAMESPACE! };
  }
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new UsageError(message);
}

function convert(spec: FlagSpec, text: unknown, source: string): unknown {
  switch (spec.kind) {
    case 'list':
      return Array.isArray(text) ? text : [];
    case 'string':
      return text === undefined ? undefined : String(text);
    case 'int': {
      const s = String(text);
      if (!/^-?\d+$/.test(s)) throw new UsageError(`${source} must be a whole number, not ${JSON.stringify(s)}`);
      return Number(s);
    }
    case 'bool': {
      if (text === true) return true; // bare --flag
      const s = String(text).toLowerCase();
      if (['true', '1', 't'].includes(s)) return true;
      if (['false', '0', 'f'].includes(s)) return false;
      throw new UsageError(`${source} must be true or false, not ${JSON.stringify(String(text))}`);
    }
  }
}

export function usage(version: string): string {
  return buildCommand(version).helpInformation();
}
