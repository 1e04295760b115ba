/**
 * Loaded by mocha before any test (.mocharc.json `require`): every twilld
 * the suite starts shares one code cache (lib/code-cache.ts) in a temporary
 * directory, removed when the run ends, instead of the machine's
 * /var/cache/twill. The first agent to run writes it; the rest start warm,
 * as agents on a real node do after their first start.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';

if (!process.env.TWILL_CODE_CACHE_DIR) {
  const dir = mkdtempSync(path.join(tmpdir(), 'twill-code-cache-'));
  process.env.TWILL_CODE_CACHE_DIR = dir;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}
