import { accessSync, constants, statSync } from 'fs';
import * as path from 'path';

/** The PATH a daemon started without one (systemd sets one; `env -i` does not) still needs for nft, iptables, bird and wireguard-go. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The first executable file called `name` on the PATH, then in `extraDirs`.
 * A lookup, not a run: `nft --version` costs a fork of the whole agent
 * (~20 ms of blocked event loop at start-up) to learn the same thing.
 */
export function findOnPath(name: string, extraDirs: readonly string[] = []): string | undefined {
  return findExecutable(name, [...(process.env.PATH ?? DEFAULT_PATH).split(':'), ...extraDirs]);
}

/** The first executable file called `name` in `dirs`. */
export function findExecutable(name: string, dirs: readonly string[]): string | undefined {
  for (const dir of dirs) {
    const file = path.join(dir || '.', name);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here; try the next directory
    }
  }
  return undefined;
}
