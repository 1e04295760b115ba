/**
 * `npm run build`, after tsc: bundles twilld into one file,
 * dist/cmd/twilld.js (replacing tsc's), with esbuild.
 *
 * Why: twilld is paid once per node. Resolving and reading the ~300 files
 * of its dependencies took ~0.2 s of CPU at every start, and etcd3 parsed
 * rpc.proto and built gRPC reflection descriptors on top (bench/README.md,
 * "Footprint"). The bundle loads one file, and etcd3's services come from a
 * description made here (lib/subnet/etcd-services.ts), so neither
 * @grpc/proto-loader nor protobufjs's .proto parser is in it.
 *
 * Native parts stay outside: the `netlink` package's binding (found from the
 * package's own directory, resolved at run time) and twill's addons and
 * programs under build/ (found as before: dist/cmd is two levels below the
 * repository root, like dist/lib).
 */
import * as path from 'path';
import { readFileSync } from 'fs';
import { build, type Plugin } from 'esbuild';
import { describeEtcdServices } from '../lib/subnet/etcd-services-describe';

const ROOT = path.resolve(__dirname, '../..');
const OUT = path.join(ROOT, 'dist', 'cmd', 'twilld.js');

/** Replaces `needle` in a dependency's file, or fails the build naming the file: a silent miss would ship the slow path. */
function patched(file: string, replacements: Array<[needle: string, replacement: string]>): string {
  let source = readFileSync(file, 'utf8');
  for (const [needle, replacement] of replacements) {
    if (!source.includes(needle)) throw new Error(`bundle-daemon: ${file} no longer contains ${JSON.stringify(needle.slice(0, 80))}; etcd3 or netlink changed, update cmd/bundle-daemon.ts`);
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

function relocations(): Plugin {
  const services = path.join(ROOT, 'lib', 'subnet', 'etcd-services.ts');
  return {
    name: 'twill-relocations',
    setup(b) {
      b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => ({
        loader: 'js',
        contents: patched(args.path, [
          ['const proto_loader_1 = require("@grpc/proto-loader");', `const etcd_services_1 = require(${JSON.stringify(services)});`],
          [ETCD3_LOAD, `const packageDefinition = (0, etcd_services_1.etcdPackageDefinition)(${JSON.stringify(describeEtcdServices())}, { longs: String, enums: String, defaults: true, oneofs: true });`],
        ]),
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

async function main(): Promise<void> {
  const result = await build({
    entryPoints: [path.join(ROOT, 'cmd', 'twilld.ts')],
    outfile: OUT,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // Names stay, so stack traces and logs still say which function failed.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: true,
    // grpc-js requires proto-loader only to serve channelz and ORCA, which twilld never does.
    external: ['@grpc/proto-loader', 'netlink/package.json'],
    plugins: [relocations()],
    logLevel: 'warning',
    metafile: true,
  });
  const inputs = Object.keys(result.metafile.inputs);
  const unwanted = inputs.filter((f) => /[\\/](proto-loader|cap)[\\/]|protobufjs[\\/]src[\\/]parse\.js$/.test(f));
  if (unwanted.length) throw new Error(`bundle-daemon: the daemon bundle pulled in ${unwanted.join(', ')}`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 1;
});
