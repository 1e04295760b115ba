/**
 * The delegate config of each container, saved at ADD in
 * `<dataDir>/<CNI_CONTAINERID>` (mode 0600, flannel's layout) so that DEL
 * and CHECK hand the delegate exactly what ADD did, even after subnet.env
 * changed or vanished. Written atomically (temp file, rename): a crash never
 * leaves half a config for DEL to choke on.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { isObject, type JsonObject } from './net-conf';

export async function saveDelegateConf(dataDir: string, containerId: string, conf: JsonObject): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, containerId);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await fs.writeFile(tmp, JSON.stringify(conf), { mode: 0o600 });
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

export type Saved = { kind: 'none' } | { kind: 'conf'; conf: JsonObject } | { kind: 'garbled'; file: string };

export async function loadDelegateConf(dataDir: string, containerId: string): Promise<Saved> {
  const file = path.join(dataDir, containerId);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    throw err;
  }
  try {
    const conf: unknown = JSON.parse(text);
    if (isObject(conf) && typeof conf.type === 'string') return { kind: 'conf', conf };
  } catch {
    // garbled below
  }
  return { kind: 'garbled', file };
}

export async function removeDelegateConf(dataDir: string, containerId: string): Promise<void> {
  await fs.rm(path.join(dataDir, containerId), { force: true });
}
