/**
 * `twill diagnose [--peer <subnet|ip>] [--json]`, run on a node: reads etcd
 * (or, with --kubeconfig/--kube-subnet-mgr/--kube-api-url, the Kubernetes
 * API's Nodes and the net-conf: kube-options.ts) and the local kernel and prints findings, `OK|WARN|FAIL <what>`, each WARN
 * and FAIL followed by `  → <what to do>` (lib/diagnose). With --peer it
 * also probes that peer's pod gateway while capturing the external
 * interface. Exit code 0 when nothing FAILed, 1 otherwise (2: bad usage).
 */
import { Command, InvalidArgumentError } from 'commander';
import { addEtcdOptions, EtcdCliOptions, etcdClientFrom } from './etcd-options';
import { addKubeOptions, kubeCliFrom, storeOrUsage, type KubeCliOptions } from './kube-options';
import { runDiagnosis, type ClusterStore, type DiagnosisOptions } from '../diagnose/diagnosis';
import { formatJson, formatText } from '../diagnose/findings';
import { isPeerSpec } from '../diagnose/probe';
import { EtcdSettingsError } from '../subnet/etcd';

interface DiagnoseCliOptions extends EtcdCliOptions, KubeCliOptions {
  iface?: string[];
  publicIp?: string;
  subnetFile: string;
  peer?: string;
  json?: boolean;
  tunnelGuard: string;
}

const env = (name: string): string | undefined => process.env[`FLANNELD_${name}`] || undefined;

export function registerDiagnose(program: Command): void {
  const cmd = program
    .command('diagnose')
    .description("check this node's datapath: kernel support, MTU, sysctls, checksum offload, its lease and every peer's kernel entries; with --peer, probe one peer")
    .option('--iface <name|ip>', 'external interface, as given to twilld (repeatable; env FLANNELD_IFACE; default: the default-route interface)', collect)
    .option('--public-ip <ip>', 'the public IP twilld publishes, when it is not the interface address (env FLANNELD_PUBLIC_IP)', env('PUBLIC_IP'))
    .option('--subnet-file <file>', 'the subnet file twilld writes (env FLANNELD_SUBNET_FILE)', env('SUBNET_FILE') ?? '/run/flannel/subnet.env')
    .option('--peer <subnet|ip>', "probe this peer: its subnet, public IP or an address inside its subnet (IPv4 or IPv6); pings the peer's pod gateway (subnet + 1) in that family and captures what leaves", parsePeer)
    .option('--tunnel-guard <bool>', 'whether twilld runs with the tunnel guard on, as given to twilld (env FLANNELD_TUNNEL_GUARD)', env('TUNNEL_GUARD') ?? 'true')
    .option('--json', 'print the findings as JSON');
  addKubeOptions(addEtcdOptions(cmd)).action(async (opts: DiagnoseCliOptions, command: Command) => {
    const endpoints = opts.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean);
    const tunnelGuard = parseBool(opts.tunnelGuard);
    if (tunnelGuard === undefined) {
      process.stderr.write(`twill diagnose: --tunnel-guard must be true or false, not ${JSON.stringify(opts.tunnelGuard)}\n`);
      process.exitCode = 2;
      return;
    }
    const store = storeOrUsage(command, 'twill diagnose');
    if (!store) return;
    const rest = {
      iface: opts.iface ?? envList('IFACE'),
      publicIP: opts.publicIp,
      subnetFile: opts.subnetFile,
      peer: opts.peer,
      tunnelGuard,
    };
    if (store === 'kube') {
      // A kubeconfig that cannot be used rejects here (exit 1, naming the file).
      const kube = kubeCliFrom(opts);
      try {
        await diagnose({ store: { kind: 'kube', kube }, ...rest }, opts.json);
      } finally {
        kube.client.close();
      }
      return;
    }
    let etcd;
    try {
      etcd = etcdClientFrom(opts);
    } catch (err) {
      if (!(err instanceof EtcdSettingsError)) throw err;
      process.stderr.write(`twill diagnose: ${err.message}\n`);
      process.exitCode = 2; // bad usage, as twilld answers the same flags
      return;
    }
    try {
      const etcdStore: ClusterStore = { kind: 'etcd', etcd, prefix: opts.etcdPrefix, endpoints };
      await diagnose({ store: etcdStore, ...rest }, opts.json);
    } finally {
      etcd.close();
    }
  });
}

async function diagnose(o: DiagnosisOptions, json: boolean | undefined): Promise<void> {
  const result = await runDiagnosis(o);
  process.stdout.write(json ? formatJson(result.findings, result.probe ? { probe: result.probe } : {}) : formatText(result.findings));
  process.exitCode = result.failed ? 1 : 0;
}

/** twilld's spelling of a bool flag (cmd/flags.ts): true/false, 1/0, t/f. */
function parseBool(text: string): boolean | undefined {
  const s = text.toLowerCase();
  if (['true', '1', 't'].includes(s)) return true;
  if (['false', '0', 'f'].includes(s)) return false;
  return undefined;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function envList(name: string): string[] {
  return (env(name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function parsePeer(value: string): string {
  if (!isPeerSpec(value)) throw new InvalidArgumentError('give a subnet (10.244.2.0/24), a public IP or an address inside the peer\'s subnet');
  return value;
}
