/**
 * What a running lab is made of, kept in a state file so that `lab status`,
 * `lab exec` and `lab down` — separate processes — can find it again.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as path from 'path';

export const LAB_DIR = process.env.TWILL_LAB_DIR ?? '/run/twill-lab';
export const STATE_FILE = path.join(LAB_DIR, 'state.json');

export interface LabState {
  readonly id: string;
  readonly nodes: number;
  readonly backend: string;
  readonly etcd: { pid: number; port: number; endpoint: string; dataDir: string };
  readonly agents: { node: number; pid: number; log: string; subnetFile: string }[];
  readonly createdAt: string;
}

export function readState(): LabState | undefined {
  try {
    return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

export function writeState(state: LabState): void {
  mkdirSync(LAB_DIR, { recursive: true });
  writeFileSync(STATE_FILE, JSON.stringify(state, null, 2) + '\n', { mode: 0o644 });
}

export function clearState(): void {
  rmSync(LAB_DIR, { recursive: true, force: true });
}
