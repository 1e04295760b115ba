/**
 * Asking each node's health server whether it is ready:
 * `GET http://<PublicIP>:<port>/readyz`, 1 s per node, a bounded number at
 * once. 200 is ready; 503 is not ready, with the reasons the node gives;
 * anything else (no answer, refused, another status) is unknown, with what
 * happened. Never rejects.
 */
import type { Health } from './model';

export const PROBE_TIMEOUT_MS = 1000;
const PARALLEL = 32;

export interface ProbeTarget {
  readonly key: string;
  readonly publicIP: string;
}

export async function probeReadiness(targets: readonly ProbeTarget[], port: number): Promise<Map<string, Health>> {
  const out = new Map<string, Health>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < targets.length) {
      const t = targets[next++];
      out.set(t.key, await probeOne(t.publicIP, port));
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, targets.length) }, worker));
  return out;
}

async function probeOne(publicIP: string, port: number): Promise<Health> {
  if (publicIP === '0.0.0.0') return { state: 'unknown', detail: 'the lease publishes no public IP' };
  const host = publicIP.includes(':') ? `[${publicIP}]` : publicIP;
  try {
    const res = await fetch(`http://${host}:${port}/readyz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS), redirect: 'manual' });
    const body = (await res.text()).slice(0, 1000);
    if (res.status === 200) return { state: 'ready' };
    if (res.status === 503) {
      const reasons = body.split('\n').map((l) => l.trim()).filter(Boolean);
      return { state: 'not ready', detail: reasons.join('; ') || 'not ready' };
    }
    return { state: 'unknown', detail: `/readyz answered HTTP ${res.status}` };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return { state: 'unknown', detail: `no answer within ${PROBE_TIMEOUT_MS} ms` };
    return { state: 'unknown', detail: e.cause?.code ?? e.message };
  }
}
