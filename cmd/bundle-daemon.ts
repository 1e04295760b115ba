/**
 * `npm run build`, after tsc: bundles twilld into one file,
 * dist/cmd/twilld.bundle.js, with esbuild, and writes dist/cmd/twilld.js
 * (replacing tsc's) as the launcher that runs it with a V8 code cache
 * (lib/code-cache.ts).
 *
 * Why: twilld is paid once per node. Resolving and reading the ~300 files
 * of its dependencies took ~0.2 s of CPU at every start, and etcd3 parsed
 * rpc.proto and built gRPC reflection descriptors on top (bench/README.md,
 * "Footprint"). The bundle loads one file, and etcd3's services come from a
 * description made here (lib/subnet/etcd-services.ts), so neither
 * @grpc/proto-loader nor protobufjs's .proto parser and reflection is in
 * it: their message codecs are made here instead of by `new Function` at
 * every start.
 *
 * Native parts stay outside: the `netlink` package's binding (found from the
 * package's own directory, resolved at run time) and twill's addons and
 * programs under build/ (found as before: dist/cmd is two levels below the
 * repository root, like dist/lib).
 */
import * as path from 'path';
import { createHash } from 'crypto';
import { readFileSync, renameSync, writeFileSync } from 'fs';
import { build, type BuildOptions, type Plugin } from 'esbuild';
import { describeEtcdServices, etcdCodecsSource } from '../lib/subnet/etcd-services-describe';

const ROOT = path.resolve(__dirname, '../..');
const LAUNCHER = path.join(ROOT, 'dist', 'cmd', 'twilld.js');
const OUT = path.join(ROOT, 'dist', 'cmd', 'twilld.bundle.js');
/** The bundle is one function expression, run by lib/code-cache.ts with CommonJS's arguments. */
const WRAP_HEAD = '(function (exports, require, module, __filename, __dirname) {';
const WRAP_TAIL = '\n})';

/** Replaces `needle` in a dependency's file, or fails the build naming the file: a silent miss would ship the slow path. */
function patched(file: string, replacements: Array<[needle: string, replacement: string]>): string {
  let source = readFileSync(file, 'utf8');
  for (const [needle, replacement] of replacements) {
    if (!source.includes(needle)) throw new Error(`bundle-daemon: ${file} no longer contains ${JSON.stringify(needle.slice(0, 80))}; the package changed, update cmd/bundle-daemon.ts`);
    source = source.replace(needle, replacement);
  }
  return source;
}

/** The exact statement in etcd3 1.1.x that loads rpc.proto (its options are the ones etcd-services-describe mirrors). */
const ETCD3_LOAD = `const packageDefinition = (0, proto_loader_1.loadSync)(\`\${__dirname}/../proto/rpc.proto\`, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
});`;

/** What the daemon's bundle changes in its dependencies (each says why). */
function relocations(): Plugin {
  const services = path.join(ROOT, 'lib', 'subnet', 'etcd-services.ts');
  const grpcNet = path.join(ROOT, 'lib', 'subnet', 'grpc-net.ts');
  const description = describeEtcdServices();
  return {
    name: 'twill-relocations',
    setup(b) {
      b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => ({
        loader: 'js',
        contents: patched(args.path, [
          ['const proto_loader_1 = require("@grpc/proto-loader");', `const etcd_services_1 = require(${JSON.stringify(services)});`],
          [ETCD3_LOAD, `const packageDefinition = (0, etcd_services_1.etcdPackageDefinition)(${JSON.stringify(description.services)}, { longs: String, enums: String, defaults: true, oneofs: true }, ${etcdCodecsSource(description)});`],
        ]),
      }));
      // grpc-js's `net` answers isIPv6 without compiling Node's IPv6 pattern for IPv4 endpoints.
      b.onResolve({ filter: /^net$/ }, (args) => (/[\\/]@grpc[\\/]grpc-js[\\/]/.test(args.importer) ? { path: 'grpc-net', namespace: 'twill-grpc-net' } : undefined));
      b.onLoad({ filter: /.*/, namespace: 'twill-grpc-net' }, () => ({
        loader: 'js',
        resolveDir: ROOT,
        contents: `module.exports = require(${JSON.stringify(grpcNet)}).grpcNet;`,
      }));
      // winston's own debug output (DEBUG=winston:*) pulls in a colour library and
      // its palette (~0.7 MB of heap, ~3 ms at every start) for lines no operator reads.
      b.onResolve({ filter: /^@dabh\/diagnostics$/ }, () => ({ path: 'winston-debug-off', namespace: 'twill-stub' }));
      b.onLoad({ filter: /.*/, namespace: 'twill-stub' }, () => ({ loader: 'js', contents: 'module.exports = () => () => {};' }));
      // long.js (protobufjs's 64-bit integers) starts V8's WebAssembly engine for a faster
      // 64-bit multiply and divide: ~0.75 MB resident and ~1.5 ms at every start, for a few
      // divisions per etcd message (revisions turned into strings). Its plain JavaScript
      // path gives the same results.
      b.onLoad({ filter: /[\\/]long[\\/]umd[\\/]index\.js$/ }, (args) => ({
        loader: 'js',
        contents: patched(args.path, [['    var wasm = null;\n    try {\n      wasm = new WebAssembly.Instance(', '    var wasm = null;\n    if (false) try {\n      wasm = new WebAssembly.Instance(']]),
      }));
      // The binding is found relative to the package; in the bundle __dirname is dist/cmd.
      b.onLoad({ filter: /[\\/]netlink[\\/]dist[\\/]raw\.js$/ }, (args) => ({
        loader: 'js',
        contents: patched(args.path, [[
          "require('node-gyp-build')(__dirname + '/..')",
          "require('node-gyp-build')(require('path').dirname(require.resolve('netlink/package.json')))",
        ]]),
      }));
    },
  };
}

/**
 * How `entry` is bundled with the daemon's dependencies and relocations.
 * Also used for the subnet racers of test/integration/racing-agents.test.ts,
 * which run the same etcd client as twilld.
 */
export function daemonBundleOptions(entry: string, outfile: string) {
  return {
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // grpc-js requires proto-loader only to serve channelz and ORCA, which twilld never does.
    external: ['@grpc/proto-loader', 'netlink/package.json'],
    plugins: [relocations()],
    logLevel: 'warning',
  } satisfies BuildOptions;
}

async function main(): Promise<void> {
  const result = await build({
    ...daemonBundleOptions(path.join(ROOT, 'cmd', 'twilld.ts'), OUT),
    // Names stay, so stack traces and logs still say which function failed.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: true,
    metafile: true,
    // ASCII only (the default, kept explicit): the launcher maps the bundle's bytes as Latin-1 text.
    charset: 'ascii',
    write: false,
    banner: { js: WRAP_HEAD },
    footer: { js: WRAP_TAIL },
  });
  const inputs = Object.keys(result.metafile.inputs);
  const unwanted = inputs.filter((f) => /[\\/](proto-loader|cap)[\\/]|protobufjs[\\/]src[\\/](parse|root|type)\.js$/.test(f));
  if (unwanted.length) throw new Error(`bundle-daemon: the daemon bundle pulled in ${unwanted.join(', ')}`);
  for (const file of result.outputFiles) {
    if (file.path === OUT && file.contents.some((byte) => byte > 0x7f)) throw new Error('bundle-daemon: the bundle is not ASCII; the launcher reads it as Latin-1');
    if (file.path === OUT && Buffer.from(file.contents).includes('WebAssembly.Instance')) throw new Error('bundle-daemon: the bundle starts a WebAssembly instance (~0.75 MB per node); see the long.js patch');
    replaceFile(file.path, file.contents);
  }
  writeLauncher();
}

/**
 * Written beside and renamed over: a running twilld maps the bundle's pages
 * (lib/code-cache.ts), and a file rewritten in place under it would change
 * or vanish beneath the functions it has yet to compile.
 */
function replaceFile(file: string, contents: Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

/** The launcher names the bundle's digest, so a cache made from another build is never fed to this one. */
function writeLauncher(): void {
  const bundle = readFileSync(OUT);
  // esbuild keeps the entry's hashbang above the banner; V8 allows one at the start of a script.
  if (!bundle.toString('latin1', 0, 200).replace(/^#!.*\n/, '').startsWith(WRAP_HEAD)) throw new Error('bundle-daemon: the bundle does not start with the wrapper function');
  const buildId = createHash('sha256').update(bundle).digest('hex');
  writeFileSync(LAUNCHER, [
    '#!/usr/bin/env node',
    "'use strict';",
    '// Written by cmd/bundle-daemon.ts: runs twilld.bundle.js with a V8 code cache (lib/code-cache.ts).',
    "require('../lib/malloc-arenas').shareOneMallocArena();",
    `require('../lib/code-cache').runBundle({ bundle: require('path').join(__dirname, 'twilld.bundle.js'), buildId: '${buildId}' });`,
    '',
  ].join('\n'), { mode: 0o755 });
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exitCode = 1;
  });
}
