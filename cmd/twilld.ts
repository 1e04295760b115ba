#!/usr/bin/env node
/**
 * twilld — the node agent. Parses flags, builds the subnet manager and the
 * agent, and runs until SIGTERM/SIGINT, which end it with exit code 0 and
 * leave the datapath and the lease in place.
 * Exit codes: 0 clean stop, 1 fatal error, 2 bad flags.
 */
import { Agent } from '../lib/agent/agent';
import { createLogger, Log } from '../lib/observe/logger';
import { type Lease, type SubnetManager } from '../lib/subnet';
import { parseDaemonFlags, usage, UsageError, DaemonFlags } from './flags';
import { VERSION } from '../lib/version';
import { startHealthServer, HealthServer } from '../lib/observe/health-server';
import { codeCacheHook, type CodeCacheHook } from '../lib/code-cache';

/**
 * /readyz turns 503 once etcd has been out of reach this long: long enough
 * to ride out a reconnect, short enough for an operator to see an outage.
 */
const READINESS_ETCD_WINDOW_MS = 10_000;

/** How long a stopped twilld waits for its connections to close before it exits anyway. */
const EXIT_GRACE_MS = 1000;

/** The code cache is written this long after the agent runs, so it holds the first reconcile's code too. */
const CODE_CACHE_SAVE_DELAY_MS = 2000;

async function main(): Promise<number> {
  let flags: DaemonFlags;
  try {
    const outcome = parseDaemonFlags(process.argv.slice(2), process.env, VERSION);
    if (outcome.kind === 'exit') return outcome.code;
    flags = outcome.flags;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`twilld: ${err.message}\n\n${usage(VERSION)}`);
      return 2;
    }
    throw err;
  }

  const log = createLogger({ format: flags.logFormat, level: flags.logLevel });
  log.info('twilld starting', { version: VERSION, pid: process.pid });
  const codeCache = codeCacheHook();
  if (codeCache) reportCodeCacheLoad(log, codeCache);
  let codeCacheTimer: NodeJS.Timeout | undefined;

  let agent: Agent | undefined;
  let made: { manager: SubnetManager; configKey: string; close: () => void };
  try {
    const onOwnLeaseChanged = (lease: Lease, previous: Lease): void => void agent?.ownLeaseChanged(lease, previous)
      .catch((err: Error) => log.error('cannot publish the re-acquired lease', { error: err.message }));
    made = await (flags.kubeSubnetMgr ? kubeManager(flags, log, onOwnLeaseChanged) : etcdManager(flags, log, onOwnLeaseChanged));
  } catch (err) {
    process.stderr.write(`twilld: ${(err as Error).message}\n`);
    return 2;
  }
  const { manager, configKey } = made;
  agent = new Agent(manager, {
    interfaces: { iface: flags.iface, ifaceRegex: flags.ifaceRegex, ifaceCanReach: flags.ifaceCanReach, publicIP: flags.publicIp, publicIPv6: flags.publicIpv6 },
    subnetFile: flags.subnetFile,
    ipMasq: flags.ipMasq,
    forwardRules: flags.iptablesForwardRules,
    masqResyncMs: flags.iptablesResync * 1000,
    natBackend: flags.natBackend,
    repairIntervalMs: flags.repairInterval * 1000,
    tunnelGuard: flags.tunnelGuard,
    // flanneld reads the key file's path from WIREGUARD_KEY_FILE only; twill also takes a flag.
    wireguardKeyFile: flags.wireguardKeyFile ?? (process.env.WIREGUARD_KEY_FILE || undefined),
    configKey,
    onRunning: () => {
      if (codeCache) codeCacheTimer = setTimeout(() => saveCodeCache(log, codeCache), CODE_CACHE_SAVE_DELAY_MS);
    },
  }, log);

  let health: HealthServer | undefined;
  if (flags.healthzPort > 0) {
    const a = agent;
    a.readiness.setRenewalWindowMs(READINESS_ETCD_WINDOW_MS);
    try {
      health = await startHealthServer({ host: flags.healthzIp, port: flags.healthzPort, readiness: () => a.readiness.status(), metrics: a.metrics, log });
      log.info('health server listening', { address: `${health.address.host}:${health.address.port}` });
    } catch (err) {
      log.error((err as Error).message);
      made.close();
      return 1;
    }
  }

  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log.info(`received ${sig}; stopping and leaving the datapath in place`);
    stop.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  try {
    await agent.run(stop.signal);
    return 0;
  } catch (err) {
    if (stop.signal.aborted) return 0;
    fatal(log, err as Error);
    return 1;
  } finally {
    clearTimeout(codeCacheTimer);
    await health?.close();
    made.close();
    exitAfterGrace(log);
  }
}

/**
 * After a stop, whatever is still open must not hold the process: etcd3
 * leaves a watch's stream open when etcd never confirms its cancellation
 * (a link that drops packets), and that stream kept twilld alive until the
 * kernel gave up on the connection, long after systemd or the kubelet had
 * stopped waiting. Unreferenced, so a stop that closed everything exits at once.
 */
function exitAfterGrace(log: Log): void {
  setTimeout(() => {
    log.warn('exiting with connections still open after the stop', { graceMs: EXIT_GRACE_MS, open: process.getActiveResourcesInfo().join(',') });
    process.exit();
  }, EXIT_GRACE_MS).unref();
}

function reportCodeCacheLoad(log: Log, cache: CodeCacheHook): void {
  const l = cache.loaded;
  if (l.state === 'used') log.info('compiled code read from the code cache', { file: l.file });
  // Compiled code from a file others can write would run as twilld: worth a warning, not only a note.
  else if (l.state === 'refused') log.warn(`not using a code cache: ${l.reason}`, { file: l.file, state: l.state });
  else if (l.state !== 'off') log.info(`not using a code cache: ${l.reason}`, { file: l.file, state: l.state });
}

function saveCodeCache(log: Log, cache: CodeCacheHook): void {
  const saved = cache.save();
  if (saved.state === 'written') log.info('wrote the code cache for the next start', { file: saved.file, bytes: saved.bytes });
  else if (saved.state === 'failed') log.warn('cannot write the code cache; the next start compiles everything again', { file: saved.file, error: saved.error });
}

type MadeManager = { manager: SubnetManager; configKey: string; close: () => void };

// Each mode loads only its own store's client: etcd3 (with grpc-js and protobufjs, ~23 MB) is not needed in kube mode, nor lib/kube in etcd mode.

/** etcd mode: leases and the network config under --etcd-prefix. */
async function etcdManager(flags: DaemonFlags, log: Log, onOwnLeaseChanged: (lease: Lease, previous: Lease) => void): Promise<MadeManager> {
  const { createEtcdClient, EtcdRegistry, EtcdSubnetManager } = await import('../lib/subnet/etcd');
  const client = createEtcdClient({
    endpoints: flags.etcdEndpoints,
    keyFile: flags.etcdKeyfile,
    certFile: flags.etcdCertfile,
    caFile: flags.etcdCafile,
    username: flags.etcdUsername,
    password: flags.etcdPassword,
    onNotice: (m) => log.warn(m),
  });
  const registry = new EtcdRegistry(client, flags.etcdPrefix);
  const manager = new EtcdSubnetManager(registry, {
    ttlSeconds: flags.subnetLeaseTtl,
    renewMarginSeconds: flags.subnetLeaseRenewMargin * 60,
    log,
    onOwnLeaseChanged,
  });
  return { manager, configKey: registry.configKey, close: () => client.close() };
}

/** --kube-subnet-mgr: the Node's podCIDR and annotations, the network config from --net-config-path. */
async function kubeManager(flags: DaemonFlags, log: Log, onOwnLeaseChanged: (lease: Lease, previous: Lease) => void): Promise<MadeManager> {
  const { flannelAnnotations, KubeClient, loadKubeConfig } = await import('../lib/kube');
  const { KubeSubnetManager } = await import('../lib/subnet/kube');
  const config = loadKubeConfig({ kubeconfigFile: flags.kubeconfigFile, apiUrl: flags.kubeApiUrl });
  const client = new KubeClient(config);
  log.info('using the Kubernetes API', { server: client.server, credentials: config.source });
  const manager = new KubeSubnetManager({
    client,
    annotations: flannelAnnotations(flags.kubeAnnotationPrefix),
    identity: flags.nodeIdentity!,
    netConfPath: flags.netConfigPath,
    setNodeNetworkUnavailable: flags.setNodeNetworkUnavailable,
    log,
    onOwnLeaseChanged,
  });
  return { manager, configKey: flags.netConfigPath, close: () => client.close() };
}

function fatal(log: Log, err: Error): void {
  log.error(err.message, { error: err.name });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`twilld: ${err.stack ?? err.message}\n`);
    process.exitCode = 1;
  },
);
