/**
 * twill-cni, flannel's CNI "meta-plugin" for twilld (CNI spec 1.0.0): it
 * turns the node's lease in subnet.env into a config for a delegate plugin
 * (bridge + host-local by default, see delegate-conf.ts) and lets that
 * plugin do the work.
 *
 *   ADD     readinessURL (if set) → subnet.env (missing: error 11) → delegate
 *           config → saved under dataDir → delegate ADD → its result on stdout.
 *           A failed ADD keeps the saved config: the runtime follows with DEL.
 *   DEL     the saved config (none: nothing was set up, success) → delegate
 *           DEL → saved config removed. Never needs subnet.env.
 *   CHECK   needs prevResult; fails when twilld's subnet.env is gone or no
 *           longer holds the subnet the pod's address came from (the pod is
 *           unreachable), else delegate CHECK with the saved config.
 *   VERSION the versions in SUPPORTED_VERSIONS.
 *
 * `runPlugin` never throws: every failure becomes the CNI error JSON and
 * exit code 1.
 */
import { buildDelegateConf, delegateSubnets } from './delegate-conf';
import { runDelegate } from './delegate';
import { CniError, ERR } from './errors';
import { readInvocation, type Invocation } from './invocation';
import { CURRENT_VERSION, SUPPORTED_VERSIONS, decodeConf, outputVersion, parseNetConf, versionAtLeast, type JsonObject, type NetConf } from './net-conf';
import { checkReadiness } from './readiness';
import { loadDelegateConf, removeDelegateConf, saveDelegateConf } from './saved-conf';
import { readSubnetEnv } from './subnet-env';

export interface PluginOutput {
  readonly stdout: string;
  /** For a person who ran the binary without CNI_COMMAND. */
  readonly stderr?: string;
  readonly exitCode: number;
}

export async function runPlugin(env: NodeJS.ProcessEnv, readStdin: () => string, about: string): Promise<PluginOutput> {
  let raw: JsonObject | undefined;
  try {
    const inv = readInvocation(env);
    if (!inv) return { stdout: '', stderr: `${about}\nRun by a container runtime with CNI_COMMAND=ADD|DEL|CHECK|VERSION and the network config on stdin.\n`, exitCode: 0 };
    const stdin = readStdinAsCni(readStdin);
    if (inv.command === 'VERSION') {
      return { stdout: JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS }) + '\n', exitCode: 0 };
    }
    raw = decodeConf(stdin);
    const conf = parseNetConf(raw);
    switch (inv.command) {
      case 'ADD':
        return { stdout: await add(inv, conf, env), exitCode: 0 };
      case 'DEL':
        await del(inv, conf, env);
        return { stdout: '', exitCode: 0 };
      case 'CHECK':
        await check(inv, conf, env);
        return { stdout: '', exitCode: 0 };
    }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(ERR.INTERNAL, `twill-cni: ${(err as Error).message ?? String(err)}`);
    return { stdout: JSON.stringify(e.toOutput(outputVersion(raw))) + '\n', exitCode: 1 };
  }
}

function readStdinAsCni(readStdin: () => string): string {
  try {
    return readStdin();
  } catch (err) {
    throw new CniError(ERR.IO_FAILURE, `cannot read the network config from stdin: ${(err as Error).message}`);
  }
}

async function add(inv: Invocation, conf: NetConf, env: NodeJS.ProcessEnv): Promise<string> {
  if (conf.readinessURL) await checkReadiness(conf.readinessURL);
  const subnetEnv = await readSubnetEnv(conf.subnetFile);
  const delegate = buildDelegateConf(conf, subnetEnv);
  await saveDelegateConf(conf.dataDir, inv.containerId, delegate);
  const result = await runDelegate(inv, 'ADD', delegate, env);
  try {
    JSON.parse(result);
  } catch {
    throw new CniError(ERR.INTERNAL, `the CNI plugin ${String(delegate.type)} printed no JSON result on ADD`, result.slice(0, 200) || undefined);
  }
  return result.endsWith('\n') ? result : `${result}\n`;
}

async function del(inv: Invocation, conf: NetConf, env: NodeJS.ProcessEnv): Promise<void> {
  const saved = await loadDelegateConf(conf.dataDir, inv.containerId);
  if (saved.kind === 'none') return; // ADD never got as far as the delegate: nothing to undo
  if (saved.kind === 'garbled') {
    // Nothing can be handed to a delegate; the veth goes with the namespace, the address stays reserved.
    process.stderr.write(`twill-cni: ${saved.file} is not a delegate config; removing it without a delegate DEL\n`);
    await removeDelegateConf(conf.dataDir, inv.containerId);
    return;
  }
  await runDelegate(inv, 'DEL', withRuntimeInputs(saved.conf, conf), env);
  await removeDelegateConf(conf.dataDir, inv.containerId);
}

async function check(inv: Invocation, conf: NetConf, env: NodeJS.ProcessEnv): Promise<void> {
  if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
    throw new CniError(ERR.INCOMPATIBLE_VERSION, `CHECK needs cniVersion 0.4.0 or later; the config says ${conf.cniVersion}`);
  }
  if (!conf.prevResult) throw new CniError(ERR.INVALID_NETWORK_CONFIG, 'CHECK needs prevResult, the result of the ADD, in the network config');
  const saved = await loadDelegateConf(conf.dataDir, inv.containerId);
  if (saved.kind !== 'conf') {
    throw new CniError(ERR.INTERNAL, `twill-cni holds no delegate config for container ${inv.containerId} in ${conf.dataDir}${saved.kind === 'garbled' ? ' (the file is garbled)' : ''}; was it added on this node?`);
  }
  const subnetEnv = await readSubnetEnv(conf.subnetFile);
  const now = [subnetEnv.subnet, subnetEnv.ipv6Subnet].filter(Boolean);
  const gone = delegateSubnets(saved.conf).filter((s) => !now.includes(s));
  if (gone.length) {
    throw new CniError(
      ERR.INTERNAL,
      `the node no longer holds subnet ${gone.join(', ')}, from which this pod's address came (${conf.subnetFile} now says ${now.join(', ') || 'none'})`,
      'twilld lost its lease and took another subnet; the pod is unreachable and must be recreated',
    );
  }
  await runDelegate(inv, 'CHECK', withRuntimeInputs(saved.conf, conf), env);
}

/**
 * The saved config plus what the runtime passes anew on DEL and CHECK. The
 * cniVersion is the runtime's current one, the version prevResult is written in.
 */
function withRuntimeInputs(saved: JsonObject, conf: NetConf): JsonObject {
  return {
    ...saved,
    cniVersion: conf.cniVersion,
    ...(conf.runtimeConfig ? { runtimeConfig: conf.runtimeConfig } : {}),
    ...(conf.prevResult ? { prevResult: conf.prevResult } : {}),
  };
}
