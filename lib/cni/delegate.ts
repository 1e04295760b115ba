/**
 * Running the delegate plugin (CNI spec 1.0.0, "Delegated plugins"): found
 * by its type in the CNI_PATH directories, run with the same CNI_*
 * variables and its config on stdin. Its result or error is the plugin's
 * own: a CNI error it prints is passed on with its code, prefixed with its
 * name; a crash without one becomes error 999 with what it wrote to stderr.
 * Its stderr is copied to ours, where runtimes log it.
 */
import { spawn } from 'child_process';
import { accessSync, constants, statSync } from 'fs';
import * as path from 'path';
import { CniError, ERR } from './errors';
import { isObject, type JsonObject } from './net-conf';
import type { CniCommand, Invocation } from './invocation';

/**
 * The first executable file named `type` in the CNI_PATH directories.
 * (lib/which.ts does the same for the agent; lib/cni is copied onto the host
 * alone by the manifests' install-cni step, so it imports nothing outside it.)
 */
export function findPlugin(type: string, dirs: readonly string[]): string {
  for (const dir of dirs) {
    const file = path.join(dir, type);
    try {
      if (statSync(file).isFile()) {
        accessSync(file, constants.X_OK);
        return file;
      }
    } catch {
      // not here; try the next directory
    }
  }
  throw new CniError(
    ERR.INTERNAL,
    `cannot find the CNI plugin "${type}" in CNI_PATH (${dirs.join(':') || 'empty'})`,
    'twill-cni delegates to the reference plugins (bridge, host-local); install them in a CNI_PATH directory, e.g. /opt/cni/bin',
  );
}

/** Runs the delegate for `command` and resolves with its stdout (the result on ADD, empty otherwise). */
export function runDelegate(inv: Invocation, command: CniCommand, conf: JsonObject, env: NodeJS.ProcessEnv): Promise<string> {
  const type = String(conf.type);
  const file = findPlugin(type, inv.path);
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env: { ...env, CNI_COMMAND: command }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err.push(b);
      process.stderr.write(b);
    });
    child.on('error', (e) => reject(new CniError(ERR.INTERNAL, `cannot run the CNI plugin ${file}: ${e.message}`)));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) return resolve(stdout);
      reject(delegateError(type, stdout, Buffer.concat(err).toString('utf8'), code, signal));
    });
    child.stdin.on('error', () => undefined); // a plugin that exits without reading stdin
    child.stdin.end(JSON.stringify(conf));
  });
}

function delegateError(type: string, stdout: string, stderr: string, code: number | null, signal: NodeJS.Signals | null): CniError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    parsed = undefined;
  }
  if (isObject(parsed) && typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
    return new CniError(parsed.code, `${type}: ${parsed.msg}`, typeof parsed.details === 'string' && parsed.details ? parsed.details : undefined);
  }
  const how = signal ? `was killed by ${signal}` : `exited with code ${String(code)}`;
  const tail = (stderr.trim() || stdout.trim()).split('\n').slice(-3).join(' | ');
  return new CniError(ERR.INTERNAL, `the CNI plugin ${type} ${how} without a CNI error`, tail || undefined);
}
