/**
 * Kubernetes mode of the operator CLI (`twill status`, `twill diagnose`):
 * the flags, the rule that picks etcd or the Kubernetes API, and the client
 * they describe (what is read with it: lib/kube/cluster-read.ts).
 *
 * Mode: any of `--kubeconfig`, `--kube-subnet-mgr`, `--kube-api-url` on the
 * command line selects Kubernetes; etcd flags on the command line beside
 * them are bad usage (which store was meant is unclear), and so are the
 * Kubernetes-only flags without them. FLANNELD_* variables only set etcd
 * defaults and never count as a choice.
 */
import { existsSync } from 'fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { FLANNELD_NET_CONF_PATH } from '../subnet/net-conf-file';
import { AnnotationPrefixError, DEFAULT_ANNOTATION_PREFIX, KubeClient, KubeConfigError, flannelAnnotations, loadKubeConfig } from '../kube';
import { DEFAULT_KUBE_NET_CONF, KUBE_DEADLINE_MS, NET_CONF_KEY, type KubeCli, type NetConfSource } from '../kube/cluster-read';

export interface KubeCliOptions {
  kubeconfig?: string;
  kubeSubnetMgr?: boolean;
  kubeApiUrl?: string;
  kubeAnnotationPrefix: string;
  netConfigPath?: string;
  kubeNetConf: string;
}

/** The flags that select Kubernetes mode, and those that only mean something in it (option attribute names). */
const KUBE_SELECTORS = ['kubeconfig', 'kubeSubnetMgr', 'kubeApiUrl'] as const;
const KUBE_ONLY = ['kubeAnnotationPrefix', 'netConfigPath', 'kubeNetConf'] as const;

export function addKubeOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--kubeconfig <file>', 'read the cluster from the Kubernetes API (twilld --kube-subnet-mgr) with this kubeconfig instead of etcd'))
    .addOption(new Option('--kube-subnet-mgr', "Kubernetes mode with the pod's service account (run inside the twill pod) unless --kubeconfig is given"))
    .addOption(new Option('--kube-api-url <url>', "Kubernetes mode: the API server's URL, replacing the kubeconfig's (or the in-cluster one)"))
    .addOption(new Option('--kube-annotation-prefix <prefix>', "Kubernetes mode: the Node annotation prefix twilld runs with").default(DEFAULT_ANNOTATION_PREFIX).argParser(parsePrefix))
    .addOption(new Option('--net-config-path <file>', `Kubernetes mode: read the network config from this net-conf.json file (default with --kube-subnet-mgr in the twill pod: ${FLANNELD_NET_CONF_PATH}, when mounted)`).conflicts('kubeNetConf'))
    .addOption(new Option('--kube-net-conf <namespace/name>', `Kubernetes mode: the ConfigMap holding the network config under key ${NET_CONF_KEY}`).default(DEFAULT_KUBE_NET_CONF).argParser(parseConfigMapRef));
}

/** Bad usage: exit 2 with the message. */
export class StoreFlagsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreFlagsError';
  }
}

/**
 * Which store the flags given on the command line mean; pure. `etcd`,
 * `kube` and `kubeOnly` are the flags given, spelled as the user wrote them
 * (`--etcd-endpoints`). Throws StoreFlagsError on a mix.
 */
export function chooseStore(given: { etcd: readonly string[]; kube: readonly string[]; kubeOnly: readonly string[] }): 'etcd' | 'kube' {
  if (given.kube.length === 0) {
    if (given.kubeOnly.length) {
      throw new StoreFlagsError(`${given.kubeOnly[0]} applies only in Kubernetes mode: add --kubeconfig <file>, --kube-subnet-mgr (in a pod) or --kube-api-url <url>`);
    }
    return 'etcd';
  }
  if (given.etcd.length) {
    throw new StoreFlagsError(`${given.etcd[0]} and ${given.kube[0]} cannot be used together: etcd flags read etcd, ${given.kube[0]} reads the Kubernetes API; give the flags of the store twilld uses`);
  }
  return 'kube';
}

/** `chooseStore` for a parsed command: only what the user typed counts (not defaults, not FLANNELD_* defaults). */
export function storeOf(cmd: Command): 'etcd' | 'kube' {
  const typed = (attr: string): boolean => cmd.getOptionValueSource(attr) === 'cli';
  const flag = (attr: string): string => cmd.options.find((o) => o.attributeName() === attr)?.long ?? attr;
  const given = (attrs: readonly string[]): string[] => attrs.filter(typed).map(flag);
  const etcd = cmd.options.map((o) => o.attributeName()).filter((a) => a.startsWith('etcd'));
  return chooseStore({ etcd: given(etcd), kube: given(KUBE_SELECTORS), kubeOnly: given(KUBE_ONLY) });
}

/** `storeOf`, or on a mix of flags: the message on stderr as `<program>: …`, exit code 2, and undefined. */
export function storeOrUsage(cmd: Command, program: string): 'etcd' | 'kube' | undefined {
  try {
    return storeOf(cmd);
  } catch (err) {
    if (!(err instanceof StoreFlagsError)) throw err;
    process.stderr.write(`${program}: ${err.message}\n`);
    process.exitCode = 2;
    return undefined;
  }
}

function parsePrefix(text: string): string {
  try {
    flannelAnnotations(text);
  } catch (err) {
    if (err instanceof AnnotationPrefixError) throw new InvalidArgumentError(err.message.replace(/^--kube-annotation-prefix "[^"]*" /, ''));
    throw err;
  }
  return text;
}

// A DNS-1123 subdomain (ConfigMap names) and label (namespaces), as the API server checks them.
const CONFIGMAP_REF = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$/;

export function parseConfigMapRef(text: string): string {
  if (!CONFIGMAP_REF.test(text)) throw new InvalidArgumentError(`must be <namespace>/<name> of a ConfigMap (lowercase letters, digits, "-", "."), e.g. ${DEFAULT_KUBE_NET_CONF}`);
  return text;
}

/**
 * The network config's source: --net-config-path, else in the twill pod
 * (--kube-subnet-mgr, no kubeconfig) the mounted file twilld reads when it
 * is there (the pod's RBAC does not cover reading ConfigMaps), else the
 * ConfigMap --kube-net-conf names.
 */
export function netConfSourceOf(opts: KubeCliOptions, mounted: (file: string) => boolean = existsSync): NetConfSource {
  if (opts.netConfigPath !== undefined) return { kind: 'file', path: opts.netConfigPath };
  const inPod = opts.kubeSubnetMgr && !opts.kubeconfig && opts.kubeNetConf === DEFAULT_KUBE_NET_CONF;
  if (inPod && mounted(FLANNELD_NET_CONF_PATH)) return { kind: 'file', path: FLANNELD_NET_CONF_PATH };
  const [namespace, name] = opts.kubeNetConf.split('/');
  return { kind: 'configmap', namespace, name };
}

/** The client the flags describe; a kubeconfig that cannot be used throws KubeConfigError naming the file. */
export function kubeCliFrom(opts: KubeCliOptions, env: NodeJS.ProcessEnv = process.env): KubeCli {
  // --kube-subnet-mgr alone: loadKubeConfig takes the pod's service account, as twilld does;
  // outside a pod say so in this command's flags (loadKubeConfig names twilld's).
  if (!opts.kubeconfig && !opts.kubeApiUrl && !(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT)) {
    throw new KubeConfigError("--kube-subnet-mgr without --kubeconfig uses the pod's service account, but this is not a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set): give --kubeconfig <file>");
  }
  const config = loadKubeConfig({ kubeconfigFile: opts.kubeconfig, apiUrl: opts.kubeApiUrl, env });
  return {
    // A shorter server-side watch timeout than twilld's: `status --watch` notices a dead connection sooner.
    client: new KubeClient(config, { requestTimeoutMs: KUBE_DEADLINE_MS, watchTimeoutSeconds: 60 }),
    names: flannelAnnotations(opts.kubeAnnotationPrefix),
    netConf: netConfSourceOf(opts),
  };
}

