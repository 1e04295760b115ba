/**
 * Runs the bundled daemon (dist/cmd/twilld.bundle.js) with a V8 code cache.
 *
 * Why: compiling the 1.5 MB bundle and the functions start-up runs is about
 * a quarter of twilld's CPU from exec to subnet.env (bench/README.md, "Code
 * cache"). The first start of a build compiles as usual and, once the agent
 * runs, writes what V8 compiled to the cache directory; every later start
 * (a restart, an upgrade's second node, the next boot) reads it instead.
 *
 * Nothing here may stop the daemon: a cache that is missing, corrupt, from
 * another build or Node, or in a directory others can write is skipped, and
 * a directory that cannot be written costs only the next start's speed.
 *
 * TWILL_CODE_CACHE_DIR names the directory (default /var/cache/twill);
 * `off` turns the cache off. Loaded by the launcher before the bundle, so it
 * uses only Node's own modules and twill's addon (lib/netlink/addon.ts),
 * which maps the bundle's text and the cache's bytes instead of copying
 * them into the heap.
 */
import { createHash } from 'crypto';
import {
  closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync,
} from 'fs';
import Module, { createRequire } from 'module';
import * as path from 'path';
import { Script } from 'vm';
import { loadNetlinkAddon } from './netlink/addon';

export const DEFAULT_CODE_CACHE_DIR = '/var/cache/twill';
const DIGEST_BYTES = 32;

/** Where the launcher leaves its hook for the daemon (the bundle is a separate module graph). */
export const CODE_CACHE_HOOK = Symbol.for('twill.codeCache');

export type CodeCacheLoad =
  | { readonly state: 'used'; readonly file: string }
  | { readonly state: 'off' }
  /** Not used, for `reason`; `save()` writes one (a refused file is replaced; a refused directory is not written). */
  | { readonly state: 'absent' | 'unreadable' | 'corrupt' | 'refused' | 'rejected'; readonly file: string; readonly reason: string };

export type CodeCacheSave =
  | { readonly state: 'written'; readonly file: string; readonly bytes: number }
  /** This start used the cache, or it is off, or it was written already: nothing to write. */
  | { readonly state: 'kept' }
  | { readonly state: 'failed'; readonly file: string; readonly error: string };

export interface CodeCacheHook {
  readonly loaded: CodeCacheLoad;
  /** Writes what V8 has compiled so far, once, if this start did not use a cache. */
  save(): CodeCacheSave;
}

/** The launcher's hook, when the daemon runs from the bundle; undefined when it runs as tsc compiled it. */
export function codeCacheHook(): CodeCacheHook | undefined {
  return (globalThis as Record<symbol, CodeCacheHook | undefined>)[CODE_CACHE_HOOK];
}

/** The cache file of one build of the bundle on one Node: V8 checks its own version and flags, not which source it was made from. */
export function codeCacheFile(dir: string, buildId: string): string {
  return path.join(dir, `twilld-${buildId.slice(0, 16)}-${process.version}-${process.arch}.v8cache`);
}

/** Whether a file name is a code cache's (of any build), as codeCacheFile names them. */
export function isCodeCacheFileName(name: string): boolean {
  return /^twilld-.*\.v8cache$/.test(name);
}

export interface RunBundleOptions {
  /** The bundle: one function expression taking CommonJS's five arguments. */
  readonly bundle: string;
  /** A digest of the bundle's text, made when it was built. */
  readonly buildId: string;
  readonly dir?: string;
}

/** Compiles and runs the bundle, with the cache where there is a usable one. */
export function runBundle(opts: RunBundleOptions): void {
  if ((process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled) {
    runAsModule(opts.bundle);
    return;
  }
  const dirSetting = opts.dir ?? process.env.TWILL_CODE_CACHE_DIR ?? DEFAULT_CODE_CACHE_DIR;
  const off = dirSetting === 'off' || dirSetting === '';
  const file = off ? '' : codeCacheFile(path.resolve(dirSetting), opts.buildId);
  const source = bundleSource(opts.bundle);
  const found = off ? undefined : readCache(file);
  const script = new Script(source, { filename: opts.bundle, cachedData: found?.data });
  let loaded: CodeCacheLoad;
  if (off) loaded = { state: 'off' };
  else if (!found) loaded = { state: 'absent', file, reason: 'no cache for this build yet' };
  else if (found.problem) loaded = { state: found.problem.state, file, reason: found.problem.reason };
  else if (script.cachedDataRejected) loaded = { state: 'rejected', file, reason: 'V8 refused it (another Node version or other V8 flags)' };
  else loaded = { state: 'used', file };

  let saved = false;
  const hook: CodeCacheHook = {
    loaded,
    save(): CodeCacheSave {
      if (saved || loaded.state === 'used' || loaded.state === 'off') return { state: 'kept' };
      saved = true;
      try {
        return writeCache(file, script.createCachedData());
      } catch (err) {
        return { state: 'failed', file, error: (err as Error).message };
      }
    },
  };
  (globalThis as Record<symbol, CodeCacheHook>)[CODE_CACHE_HOOK] = hook;

  const run = script.runInThisContext() as (exports: object, require: NodeRequire, module: object, filename: string, dirname: string) => void;
  const bundleModule = { exports: {} as object, filename: opts.bundle, id: '.', loaded: false };
  run.call(bundleModule.exports, bundleModule.exports, createRequire(opts.bundle), bundleModule, opts.bundle, path.dirname(opts.bundle));
}

/**
 * The bundle's text, over its file's pages where the addon can map it
 * (lib/netlink/native/mapped-source.c): V8 holds a script's source for the
 * script's life, and read into the heap it was the agent's largest object.
 */
function bundleSource(bundle: string): string {
  try {
    const mapped = loadNetlinkAddon().mapLatin1(bundle);
    if (mapped !== null) return mapped;
  } catch {
    // Not built: the daemon reports that itself when it needs the addon.
  }
  return readFileSync(bundle, 'utf8');
}

/**
 * With --enable-source-maps, through Node's module loader, which reads the
 * bundle's source map (a vm.Script's errors are not mapped in Node 20). The
 * call appended after the function expression keeps every line in place.
 */
function runAsModule(bundle: string): void {
  const loader = Module as unknown as {
    new (id: string): { filename: string; paths: string[]; _compile(content: string, filename: string): unknown };
    _nodeModulePaths(dir: string): string[];
  };
  const m = new loader(bundle);
  m.filename = bundle;
  m.paths = loader._nodeModulePaths(path.dirname(bundle));
  m._compile(`${readFileSync(bundle, 'utf8')}\n(exports, require, module, __filename, __dirname);\n`, bundle);
}

interface FoundCache {
  data?: Buffer;
  problem?: { state: 'unreadable' | 'corrupt' | 'refused'; reason: string };
}

/** The cache's payload, if the file is there, ours, and intact; undefined when there is none. */
function readCache(file: string): FoundCache | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const untrusted = untrustedReason(fstatSync(fd), 'the file') ?? untrustedReason(statSync(path.dirname(file)), 'its directory');
    if (untrusted) return { problem: { state: 'refused', reason: untrusted } };
    const bytes = mappedBytes(fd) ?? readFileSync(fd);
    const payload = bytes.subarray(DIGEST_BYTES);
    if (bytes.length <= DIGEST_BYTES || !createHash('sha256').update(payload).digest().equals(bytes.subarray(0, DIGEST_BYTES))) {
      return { problem: { state: 'corrupt', reason: 'its checksum does not match' } };
    }
    return { data: payload };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { problem: { state: 'unreadable', reason: `cannot read it: ${(err as Error).message}` } };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The cache file's bytes over its mapped pages (lib/netlink/native/mapped-source.c
 * says why); null where the addon is not built or the file cannot be mapped.
 */
function mappedBytes(fd: number): Buffer | null {
  try {
    return loadNetlinkAddon().mapBytes(fd);
  } catch {
    return null;
  }
}

/** Compiled code is run as is: only a file and directory no one else can write are trusted. */
function untrustedReason(st: { uid: number; mode: number }, what: string): string | undefined {
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) return `${what} belongs to uid ${st.uid}, not ${uid}`;
  if (st.mode & 0o022) return `${what} can be written by others (mode ${(st.mode & 0o777).toString(8)})`;
  return undefined;
}

/** Writes the cache in one rename (agents starting together never read half a file), and removes other builds' caches. */
function writeCache(file: string, data: Buffer): CodeCacheSave {
  const dir = path.dirname(file);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const refused = untrustedReason(statSync(dir), 'the directory');
    if (refused) throw new Error(refused);
    writeFileSync(tmp, Buffer.concat([createHash('sha256').update(data).digest(), data]), { mode: 0o600 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // never written
    }
    return { state: 'failed', file, error: (err as Error).message };
  }
  for (const name of readdirSync(dir)) {
    if (isCodeCacheFileName(name) && name !== path.basename(file)) {
      try {
        unlinkSync(path.join(dir, name));
      } catch {
        // another agent removed it first
      }
    }
  }
  return { state: 'written', file, bytes: data.length + DIGEST_BYTES };
}
