/**
 * The installable package: `npm pack` makes a tarball that
 * `npm install -g ./twill-<version>.tgz` installs on a machine with Node and
 * a C compiler, building the native engine, after which twilld, twill and
 * twill-cni run from the PATH. Installed here into a temporary prefix (the
 * dependencies come from the npm registry or npm's cache).
 */
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import * as path from 'path';

const REPO = path.resolve(__dirname, '../../..');
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };

describe('the npm package: packed, installed with npm install -g into a temporary prefix, each command run from the PATH', function () {
  this.timeout(300_000);
  let dir: string;
  let prefix: string;
  let env: NodeJS.ProcessEnv;
  let tarball: string;

  before(() => {
    dir = mkdtempSync('/var/tmp/twill-package-');
    prefix = path.join(dir, 'prefix');
    // The suite has built dist/ already: pack it as it is (no second tsc run).
    const name = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: REPO, encoding: 'utf8' }).trim().split('\n').pop()!;
    tarball = path.join(dir, name);
    const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: dir, encoding: 'utf8' });
    if (install.status !== 0) throw new Error(`npm install -g ${tarball} failed (${install.status}):\n${install.stdout}${install.stderr}`);
    // Only the prefix's bin and the system's: nothing from this checkout.
    env = { PATH: `${path.join(prefix, 'bin')}:/usr/local/bin:/usr/bin:/bin`, HOME: process.env.HOME ?? '/root' };
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`is named ${pkg.name}-${pkg.version}.tgz and holds the built code, the engine's C sources and the manifests, not the tests`, () => {
    expect(path.basename(tarball)).to.equal(`${pkg.name}-${pkg.version}.tgz`);
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const f of ['dist/cmd/twilld.js', 'dist/cmd/twilld.bundle.js', 'dist/cmd/twill.js', 'dist/cmd/twill-cni.js', 'binding.gyp', 'backends/userspace/native/engine.c', 'backends/wireguard/native/private-run.c', 'lib/netlink/native/event-socket.c', 'manifests/systemd/twilld.service', 'manifests/kubernetes/twill.yaml']) {
      expect(files, f).to.include(`package/${f}`);
    }
    expect(files.filter((f) => f.startsWith('package/dist/test/') || f.startsWith('package/build/'))).to.deep.equal([]);
  });

  it('builds the native parts on install', () => {
    for (const f of ['twill-dataplane', 'twill-wg-run', 'twill_netlink_events.node']) expect(existsSync(path.join(prefix, 'lib/node_modules/twill/build/Release', f)), f).to.equal(true);
  });

  it('twilld --version prints the package version', () => {
    const r = spawnSync('twilld', ['--version'], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.contain(pkg.version);
  });

  it('twill --help lists its commands', () => {
    const r = spawnSync('twill', ['--help'], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/Usage: twill/).and.to.match(/status/).and.to.match(/migrate/);
  });

  it('twill-cni answers VERSION as a CNI plugin', () => {
    const r = spawnSync('twill-cni', [], { env: { ...env, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout).supportedVersions).to.include('1.0.0');
  });
});
