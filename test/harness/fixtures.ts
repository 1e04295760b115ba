import { existsSync } from 'fs';
import * as path from 'path';

/**
 * The flanneld fixtures: ../shared/fixtures/flanneld beside the repository
 * (four levels above dist/test/<dir>); TWILL_FIXTURES names another place.
 */
export function fixturesDir(): string {
  const beside = path.join(__dirname, '../../../..', 'shared/fixtures/flanneld');
  if (existsSync(beside)) return beside;
  const fromEnv = process.env.TWILL_FIXTURES;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  throw new Error(`flanneld fixtures not found at ${beside}; set TWILL_FIXTURES to their directory`);
}
