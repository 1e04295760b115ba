/**
 * The subnet racer (subnet-racer.ts) bundled the way twilld is
 * (cmd/bundle-daemon.ts): one file, etcd3's services from the description
 * made at build time. Unbundled, every racer resolved ~300 files and had
 * proto-loader parse etcd's rpc.proto (0.42–0.50 s of CPU each, 0.28
 * bundled); the racing test starts 545 of them on two cores, and their
 * loading was most of its five minutes. Bundled, they also run the etcd client exactly as twilld does.
 */
import * as path from 'path';
import { build } from 'esbuild';
import { daemonBundleOptions } from '../../cmd/bundle-daemon';

const ROOT = path.resolve(__dirname, '../../..');

/** Builds the racer's bundle (under a second) and returns its path. */
export async function bundleRacer(): Promise<string> {
  const outfile = path.join(ROOT, 'dist', 'test', 'harness', 'subnet-racer.bundle.js');
  await build(daemonBundleOptions(path.join(ROOT, 'test', 'harness', 'subnet-racer.ts'), outfile));
  return outfile;
}
