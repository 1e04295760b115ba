/**
 * Asking each node's health server whether it is ready:
 * `GET http://<PublicIP>:<port>/readyz`, 1 s per node, a bounded number at
 * once. 200 is ready; 503 is not ready, with the reasons the node gives;
 * anything else (no answer, refused, another status) is unknown, with what
 * happened. A node whose lease terminates bgp is also asked for its
 * `/metrics`, whose `twill_bgp_session_state` series say each BGP session's
 * state. Never rejects.
 */
import type { BgpSessionState, Health } from './model';

export const PROBE_TIMEOUT_MS = 1000;
const PARALLEL = 32;

export interface ProbeTarget {
  readonly key: string;
  readonly publicIP: string;
  /** Also read its BGP sessions. */
  readonly bgp?: boolean;
}

export async function probeReadiness(targets: readonly ProbeTarget[], port: number): Promise<Map<string, Health>> {
  const out = new Map<string, Health>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < targets.length) {
      const t = targets[next++];
      const health = await probeOne(t.publicIP, port);
      const bgp = t.bgp && health.state !== 'unknown' ? await bgpSessionsOf(t.publicIP, port) : undefined;
      out.set(t.key, bgp ? { ...health, bgp } : health);
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

const LABEL = '"((?:[^"\\\\]|\\\\.)*)"';
const SESSION_STATE = new RegExp(`^twill_bgp_session_state\\{neighbor=${LABEL},state=${LABEL}(?:,reason=${LABEL})?\\} 1$`);

/** A label value as the exposition format escapes it. */
function unescapeLabel(v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

/** The node's BGP sessions from its /metrics; undefined when it does not answer. */
async function bgpSessionsOf(publicIP: string, port: number): Promise<BgpSessionState[] | undefined> {
  const host = publicIP.includes(':') ? `[${publicIP}]` : publicIP;
  try {
    const res = await fetch(`http://${host}:${port}/metrics`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS), redirect: 'manual' });
    if (res.status !== 200) return undefined;
    return parseBgpSessions(await res.text());
  } catch {
    return undefined;
  }
}

export function parseBgpSessions(metrics: string): BgpSessionState[] {
  const out: BgpSessionState[] = [];
  for (const line of metrics.split('\n')) {
    const m = SESSION_STATE.exec(line);
    if (m) out.push({ neighbor: unescapeLabel(m[1]), state: unescapeLabel(m[2]), ...(m[3] ? { reason: unescapeLabel(m[3]) } : {}) });
  }
  return out;
}
