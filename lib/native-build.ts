import { existsSync } from 'fs';
import * as path from 'path';

/**
 * Where twill's native parts (node-gyp's build/Release or build/Debug at the
 * repository root) may be. This module runs from dist/lib (tsc), from
 * dist/cmd (inside the daemon bundle, cmd/bundle-daemon.ts) or from lib/
 * (the sources): the root is two levels up in the first two, one in the last.
 */
export function nativeBuildCandidates(name: string): string[] {
  const roots = [path.resolve(__dirname, '../..'), path.resolve(__dirname, '..')];
  return roots.flatMap((r) => [path.join(r, 'build', 'Release', name), path.join(r, 'build', 'Debug', name)]);
}

/** The first of nativeBuildCandidates(name) that exists. */
export function findNativeBuild(name: string): string | undefined {
  return nativeBuildCandidates(name).find((p) => existsSync(p));
}
