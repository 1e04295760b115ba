import { expect } from 'chai';
import { spawnSync } from 'child_process';
import { buildSync } from 'esbuild';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { CODE_CACHE_HOOK, codeCacheFile, codeCacheHook, runBundle, type CodeCacheHook } from '../../lib/code-cache';
import { loadNetlinkAddon } from '../../lib/netlink/addon';

/** What the test bundles leave behind when they run. */
interface Ran { runs: Array<{ filename: string; dirname: string; resolves: boolean; value: number }> }
const ran = globalThis as unknown as { __codeCacheTest?: Ran };

/** A bundle as bundle-daemon writes it: one function expression taking CommonJS's arguments. */
function bundleText(factor: number): string {
  return `#!/usr/bin/env node
(function (exports, require, module, __filename, __dirname) {
  function scaled(x) { return x * ${factor}; }
  const seen = globalThis.__codeCacheTest || (globalThis.__codeCacheTest = { runs: [] });
  seen.runs.push({ filename: __filename, dirname: __dirname, resolves: typeof require.resolve === 'function', value: scaled(2) });
})`;
}

describe('code cache: the launcher runs the bundle with V8 compiled code it wrote before', () => {
  let dir: string;
  let bundle: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'twill-code-cache-test-'));
    bundle = path.join(dir, 'twilld.bundle.js');
    writeFileSync(bundle, bundleText(21));
    ran.__codeCacheTest = { runs: [] };
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    delete (globalThis as Record<symbol, unknown>)[CODE_CACHE_HOOK];
    delete ran.__codeCacheTest;
  });

  function start(buildId = 'a'.repeat(64), cacheDir = path.join(dir, 'cache')): CodeCacheHook {
    runBundle({ bundle, buildId, dir: cacheDir });
    const hook = codeCacheHook();
    expect(hook, 'the launcher leaves its hook for the daemon').to.not.equal(undefined);
    return hook!;
  }

  it('compiles without a cache the first time, writes one when asked, and reads it at the next start', () => {
    const first = start();
    expect(first.loaded).to.deep.include({ state: 'absent', reason: 'no cache for this build yet' });
    const saved = first.save();
    expect(saved.state).to.equal('written');
    const file = codeCacheFile(path.join(dir, 'cache'), 'a'.repeat(64));
    expect(statSync(file).mode & 0o777, 'the file').to.equal(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777, 'its directory').to.equal(0o700);
    expect(first.save(), 'written once').to.deep.equal({ state: 'kept' });

    const second = start();
    expect(second.loaded).to.deep.equal({ state: 'used', file });
    expect(second.save(), 'nothing to write after a start that used it').to.deep.equal({ state: 'kept' });
    expect(ran.__codeCacheTest!.runs, 'the bundle ran both times, with its own file name and a working require').to.deep.equal([
      { filename: bundle, dirname: dir, resolves: true, value: 42 },
      { filename: bundle, dirname: dir, resolves: true, value: 42 },
    ]);
  });

  it("runs the bundle's text from its mapped file, not from a copy read into the heap", () => {
    start();
    const mapped = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(` ${bundle}`));
    expect(mapped, 'the bundle mapped read-only into this process').to.have.length(1);
    expect(mapped[0].split(/\s+/)[1]).to.equal('r--p');
    expect(ran.__codeCacheTest!.runs.map((r) => r.value), 'and it ran').to.deep.equal([42]);
  });

  it("reads the cache over its file's mapped pages: the same bytes, read-only, and nothing for a file it cannot map", () => {
    start().save();
    const file = codeCacheFile(path.join(dir, 'cache'), 'a'.repeat(64));
    const addon = loadNetlinkAddon();
    const fd = openSync(file, 'r');
    try {
      const bytes = addon.mapBytes(fd);
      expect(bytes, 'mapped').to.not.equal(null);
      expect(bytes!.equals(readFileSync(file)), 'the file\'s bytes').to.equal(true);
      const mapping = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(` ${file}`));
      expect(mapping.map((l) => l.split(/\s+/)[1]), 'mapped read-only').to.include('r--p');
    } finally {
      closeSync(fd);
    }
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '');
    const emptyFd = openSync(empty, 'r');
    try {
      expect(addon.mapBytes(emptyFd), 'an empty file').to.equal(null);
    } finally {
      closeSync(emptyFd);
    }
    expect(addon.mapBytes(-1), 'no file').to.equal(null);
  });

  it('skips a corrupt cache, still runs the bundle, and replaces the file', () => {
    start().save();
    const file = codeCacheFile(path.join(dir, 'cache'), 'a'.repeat(64));
    const bytes = readFileSync(file);
    bytes[bytes.length - 10] ^= 0xff;
    writeFileSync(file, bytes);
    const hook = start();
    expect(hook.loaded).to.deep.include({ state: 'corrupt', reason: 'its checksum does not match' });
    expect(hook.save().state).to.equal('written');
    expect(start().loaded.state).to.equal('used');
    expect(ran.__codeCacheTest!.runs).to.have.length(3);
  });

  it('reports a cache V8 refuses (made from other code under the same build name) and writes a new one', () => {
    const other = path.join(dir, 'other.js');
    writeFileSync(other, bundleText(21000));
    runBundle({ bundle: other, buildId: 'a'.repeat(64), dir: path.join(dir, 'cache') });
    codeCacheHook()!.save();
    const hook = start();
    expect(hook.loaded.state).to.equal('rejected');
    expect(ran.__codeCacheTest!.runs.map((r) => r.value), 'each ran its own code').to.deep.equal([42000, 42]);
    expect(hook.save().state).to.equal('written');
    expect(start().loaded.state).to.equal('used');
  });

  it('keys the cache by build: another build starts without it, and writing its own removes the old one', () => {
    start('a'.repeat(64)).save();
    writeFileSync(bundle, bundleText(12));
    const next = start('b'.repeat(64));
    expect(next.loaded.state).to.equal('absent');
    next.save();
    expect(readdirSync(path.join(dir, 'cache'))).to.deep.equal([path.basename(codeCacheFile(dir, 'b'.repeat(64)))]);
    expect(ran.__codeCacheTest!.runs.map((r) => r.value)).to.deep.equal([42, 24]);
  });

  it('does not read a cache others can write, and replaces it with its own', () => {
    start().save();
    const file = codeCacheFile(path.join(dir, 'cache'), 'a'.repeat(64));
    chmodSync(file, 0o666);
    const hook = start();
    expect(hook.loaded).to.deep.include({ state: 'refused', reason: 'the file can be written by others (mode 666)' });
    expect(hook.save().state).to.equal('written');
    expect(statSync(file).mode & 0o777).to.equal(0o600);
  });

  it('does not write into a directory others can write', () => {
    const shared = path.join(dir, 'shared');
    start('a'.repeat(64), shared).save();
    chmodSync(shared, 0o777);
    const hook = start('a'.repeat(64), shared);
    expect(hook.loaded).to.deep.include({ state: 'refused', reason: 'its directory can be written by others (mode 777)' });
    expect(hook.save()).to.deep.include({ state: 'failed', error: 'the directory can be written by others (mode 777)' });
  });

  it('runs without a cache when it is off, when its directory cannot be made, or when the file cannot be read', () => {
    const off = start('a'.repeat(64), 'off');
    expect(off.loaded).to.deep.equal({ state: 'off' });
    expect(off.save()).to.deep.equal({ state: 'kept' });
    const notADir = path.join(dir, 'plain-file');
    writeFileSync(notADir, '');
    const blocked = start('a'.repeat(64), notADir);
    expect(blocked.loaded.state).to.equal('unreadable');
    const saved = blocked.save();
    expect(saved.state).to.equal('failed');
    expect(saved.state === 'failed' && saved.error).to.match(/ENOTDIR|EEXIST/);
    expect(existsSync(path.join(dir, 'cache'))).to.equal(false);
    // A directory where the cache file should be: it opens, but cannot be read.
    mkdirSync(codeCacheFile(path.join(dir, 'odd'), 'a'.repeat(64)), { recursive: true });
    const odd = start('a'.repeat(64), path.join(dir, 'odd'));
    expect(odd.loaded).to.deep.include({ state: 'unreadable' });
    expect(odd.save().state).to.equal('failed');
    expect(ran.__codeCacheTest!.runs).to.have.length(3);
  });

  it('with --enable-source-maps, runs the bundle through the module loader so stack traces name the sources', () => {
    const entry = path.join(dir, 'entry.ts');
    writeFileSync(entry, 'function thrower(n: number): never {\n  throw new Error(`boom ${n}`);\n}\nthrower(7);\n');
    buildSync({
      entryPoints: [entry], outfile: bundle, bundle: true, platform: 'node', format: 'cjs', sourcemap: true, logLevel: 'silent',
      banner: { js: '(function (exports, require, module, __filename, __dirname) {' }, footer: { js: '\n})' },
    });
    const launch = `require(${JSON.stringify(require.resolve('../../lib/code-cache'))}).runBundle({ bundle: ${JSON.stringify(bundle)}, buildId: 'c'.repeat(64), dir: 'off' })`;
    const mapped = spawnSync(process.execPath, ['--enable-source-maps', '-e', launch], { encoding: 'utf8' });
    expect(mapped.stderr).to.include('Error: boom 7').and.to.include(`at thrower (${entry}:2:9)`);
    const plain = spawnSync(process.execPath, ['-e', launch], { encoding: 'utf8' });
    expect(plain.stderr).to.include('Error: boom 7').and.to.include(`at thrower (${bundle}:`);
  });
});
