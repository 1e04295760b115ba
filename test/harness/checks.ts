/** What many cluster tests ask: can every pod reach every other, and what does a node's health server say. */
import * as http from 'http';
import type { TwillCluster } from './twill-cluster';
import { ping } from './ping';

/**
 * Each pod pings every other pod's address of one family (IPv4 unless
 * told); the pairs that got no reply.
 */
export async function allPodsPing(tc: TwillCluster, nodes: readonly number[] = Array.from({ length: tc.size }, (_, i) => i), family: 4 | 6 = 4): Promise<string[]> {
  const failures: string[] = [];
  const address = (node: number) => (family === 6 ? tc.podIpv6(node) : tc.podIp(node));
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue;
      const r = await ping(tc.podNs(a), address(b), { count: 2, intervalMs: 200, timeoutMs: 5000 });
      if (r.received === 0) failures.push(`pod ${a} -> pod ${b} (${address(b)})`);
    }
  }
  return failures;
}

/** The body of GET http://host:port/path (a twilld health server on a node address). */
export function httpBody(host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host, port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}
