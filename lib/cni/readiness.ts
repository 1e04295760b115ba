/**
 * The optional readiness gate: when the config names a `readinessURL`
 * (twilld's `/readyz`), ADD asks it first and refuses with error 11 ("try
 * again later") unless it answers 200, so pods are not wired to a node whose
 * agent has not programmed the datapath yet. Bounded by a timeout, because
 * the runtime is waiting.
 */
import * as http from 'http';
import { CniError, ERR } from './errors';

const TIMEOUT_MS = 3000;

export function checkReadiness(url: string, timeoutMs = TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const notReady = (why: string): CniError =>
      new CniError(ERR.TRY_AGAIN_LATER, `twilld is not ready on this node: ${url} ${why}`, 'the runtime retries; twilld\'s log says what it waits for');
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 1024) body += chunk;
      });
      res.on('end', () => {
        if (res.statusCode === 200) return resolve();
        const reasons = body.trim().split('\n').slice(0, 3).join('; ');
        reject(notReady(`answered ${String(res.statusCode)}${reasons ? `: ${reasons}` : ''}`));
      });
      res.on('error', (e) => reject(notReady(`failed mid-answer (${e.message})`)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(notReady(`cannot be reached (${e.code ?? e.message}); is twilld running with --healthz-port?`)));
  });
}
