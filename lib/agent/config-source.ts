/**
 * Reading the network config from etcd until a valid one is there.
 * While the key is missing, unreadable or invalid it retries; it logs once
 * each time the situation changes (missing → invalid → etcd down …), never
 * once per retry.
 */
import { setTimeout as sleep } from 'timers/promises';
import { ConfigError, NetworkConfig, parseNetworkConfig } from '../config';
import type { Log } from '../observe/logger';
import type { SubnetManager } from '../subnet';
import { KNOWN_BACKEND_TYPES, validateBackendConfig, BackendUnavailableError, checkIPv6Backends } from '../../backends';

export async function waitForNetworkConfig(
  manager: SubnetManager,
  configKey: string,
  log: Log,
  signal: AbortSignal,
  hooks: { rejected?: () => void } = {},
  retryMs = 1000,
): Promise<{ config: NetworkConfig; revision: bigint }> {
  let lastState = '';
  const say = (state: string, level: 'info' | 'warn' | 'error', message: string, meta?: Record<string, unknown>) => {
    if (state === lastState) return;
    lastState = state;
    log[level](message, meta);
  };
  for (;;) {
    signal.throwIfAborted();
    try {
      const found = await manager.readNetworkConfig();
      if (!found) {
        say('missing', 'warn', manager.store ? `waiting for the network config: no file ${configKey} yet` : `waiting for the network config: no key ${configKey} in etcd yet`);
      } else {
        const config = parseNetworkConfigText(found.text);
        for (const w of config.warnings) log.warn(`network config: ${w}`);
        if (lastState) log.info('network config found');
        return { config, revision: found.revision };
      }
    } catch (err) {
      if (err instanceof ConfigError) {
        if (lastState !== `invalid:${err.message}`) hooks.rejected?.();
        say(`invalid:${err.message}`, 'error', `the network config at ${configKey} is invalid, waiting for a fix: ${err.message}`, { field: err.field });
      } else if (manager.isSetupError(err)) {
        throw err; // wrong CA, rejected certificate, bad credentials: retrying cannot help
      } else {
        say('unreachable', 'warn', `cannot read the network config from ${manager.store ? configKey : 'etcd'}; retrying: ${(err as Error).message}`);
      }
    }
    await sleep(retryMs, undefined, { signal });
  }
}

/** Parses a network config and checks the backend's own keys (VNI, Port, Fallback, …) and that it carries the families asked for; throws ConfigError naming the key. */
export function parseNetworkConfigText(text: string): NetworkConfig {
  const config = parseNetworkConfig(text, KNOWN_BACKEND_TYPES);
  checkIPv6Backends(config);
  try {
    validateBackendConfig(config.backend);
  } catch (err) {
    // A known but unimplemented type is the agent's failure to report, not a config error.
    if (!(err instanceof BackendUnavailableError)) throw err;
  }
  return config;
}
