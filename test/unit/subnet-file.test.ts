import { expect } from 'chai';
import { promises as fs, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { IPNet } from '../../lib/ip';
import {
  formatSubnetFile,
  parseEnv,
  readPreviousSubnets,
  writeSubnetFile,
  type PreviousSubnets,
  type SubnetFileContents,
} from '../../lib/subnet/subnet-file';
import { fixturesDir } from '../harness/fixtures';


/** The contents flanneld wrote its subnet.env fixture from. */
const FIXTURE: SubnetFileContents = {
  network: IPNet.parse('10.0.0.0/8'),
  subnet: IPNet.parse('10.1.31.0/24'),
  mtu: 1450,
  ipMasq: false,
};

const DUAL: SubnetFileContents = {
  network: IPNet.parse('10.244.0.0/16'),
  subnet: IPNet.parse('10.244.1.0/24'),
  ipv6Network: IPNet.parse('fc00::/48'),
  ipv6Subnet: IPNet.parse('fc00:0:0:1::/64'),
  mtu: 1450,
  ipMasq: true,
};

/** The fields that were read, as text; `{}` when nothing was. */
function present(p: PreviousSubnets): Record<string, string> {
  const out: Record<string, string> = {};
  if (p.subnet) out.subnet = p.subnet.toString();
  if (p.ipv6Subnet) out.ipv6Subnet = p.ipv6Subnet.toString();
  return out;
}

describe('subnet file', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'twill-subnet-file-'));
  });

  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  describe('formatSubnetFile', () => {
    it("writes flanneld's subnet.env fixture byte for byte", () => {
      const expected = readFileSync(path.join(fixturesDir(), 'subnet.env'));
      expect(Buffer.from(formatSubnetFile(FIXTURE))).to.deep.equal(expected);
    });

    it('gives the first address of the subnet, with the subnet length, as FLANNEL_SUBNET', () => {
      const text = formatSubnetFile({ ...FIXTURE, network: IPNet.parse('10.20.0.0/20'), subnet: IPNet.parse('10.20.0.64/26') });
      expect(parseEnv(text).get('FLANNEL_SUBNET')).to.equal('10.20.0.65/26');
    });

    it('adds the IPv6 lines after the IPv4 ones in dual stack', () => {
      expect(formatSubnetFile(DUAL)).to.equal(
        'FLANNEL_NETWORK=10.244.0.0/16\n' +
          'FLANNEL_SUBNET=10.244.1.1/24\n' +
          'FLANNEL_IPV6_NETWORK=fc00::/48\n' +
          'FLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n' +
          'FLANNEL_MTU=1450\n' +
          'FLANNEL_IPMASQ=true\n',
      );
    });

    it('writes only the IPv6 lines for an IPv6-only network', () => {
      const text = formatSubnetFile({ ...DUAL, network: undefined, subnet: undefined });
      expect(text).to.equal('FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    });
  });

  describe('writeSubnetFile', () => {
    it('writes the file with mode 0644 even under umask 077, creating its parent directories', async () => {
      const file = path.join(dir, 'run/flannel/subnet.env');
      const saved = process.umask(0o077);
      try {
        await writeSubnetFile(file, FIXTURE);
      } finally {
        process.umask(saved);
      }
      expect(await fs.readFile(file, 'utf8')).to.equal(formatSubnetFile(FIXTURE));
      expect((await fs.stat(file)).mode & 0o777).to.equal(0o644);
      // Readers running as other users must be able to reach the file, too.
      for (const d of ['run', 'run/flannel']) {
        expect((await fs.stat(path.join(dir, d))).mode & 0o777, d).to.equal(0o755);
      }
    });

    it('creates the parent directories of a relative path with mode 0755 too', async () => {
      const cwd = process.cwd();
      const saved = process.umask(0o077);
      try {
        process.chdir(dir);
        await writeSubnetFile(path.join('flannel', 'net', 'subnet.env'), FIXTURE);
      } finally {
        process.umask(saved);
        process.chdir(cwd);
      }
      for (const d of ['flannel', 'flannel/net']) {
        expect((await fs.stat(path.join(dir, d))).mode & 0o777, d).to.equal(0o755);
      }
      expect((await fs.stat(path.join(dir, 'flannel/net/subnet.env'))).mode & 0o777).to.equal(0o644);
    });

    it('leaves the mode of a parent directory that already existed alone', async () => {
      await fs.chmod(dir, 0o700);
      await writeSubnetFile(path.join(dir, 'subnet.env'), FIXTURE);
      expect((await fs.stat(dir)).mode & 0o777).to.equal(0o700);
    });

    it('replaces an earlier file by rename, leaving no temporary file behind', async () => {
      const file = path.join(dir, 'subnet.env');
      await fs.writeFile(file, 'FLANNEL_SUBNET=10.9.9.1/24\n', { mode: 0o600 });
      const before = (await fs.stat(file)).ino;
      await writeSubnetFile(file, DUAL);
      expect(await fs.readFile(file, 'utf8')).to.equal(formatSubnetFile(DUAL));
      expect((await fs.stat(file)).ino, 'a new inode: the old file was replaced, not rewritten in place').to.not.equal(before);
      expect((await fs.stat(file)).mode & 0o777).to.equal(0o644);
      expect(await fs.readdir(dir)).to.deep.equal(['subnet.env']);
    });

    it('survives concurrent writes: each completes, the file is whole, no temporary file is left', async () => {
      const file = path.join(dir, 'subnet.env');
      const versions = [1, 2, 3, 4].map((n): SubnetFileContents => ({ ...FIXTURE, subnet: IPNet.parse(`10.1.${n}.0/24`) }));
      await Promise.all(versions.map((v) => writeSubnetFile(file, v)));
      expect(versions.map(formatSubnetFile)).to.include(await fs.readFile(file, 'utf8'));
      expect(await fs.readdir(dir)).to.deep.equal(['subnet.env']);
    });

    it('fails when the file cannot be put in place, and removes its temporary file', async () => {
      const file = path.join(dir, 'subnet.env');
      await fs.mkdir(path.join(file, 'occupied'), { recursive: true }); // a non-empty directory where the file should go
      let error: unknown;
      try {
        await writeSubnetFile(file, FIXTURE);
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(Error);
      expect(await fs.readdir(dir)).to.deep.equal(['subnet.env']);
      expect(await fs.readdir(file)).to.deep.equal(['occupied']);
    });
  });

  describe('readPreviousSubnets', () => {
    it('reads back the subnets that writeSubnetFile wrote', async () => {
      const file = path.join(dir, 'subnet.env');
      const warnings: string[] = [];
      await writeSubnetFile(file, DUAL);
      expect(present(await readPreviousSubnets(file, (m) => warnings.push(m)))).to.deep.equal({
        subnet: '10.244.1.0/24',
        ipv6Subnet: 'fc00:0:0:1::/64',
      });
      expect(warnings).to.deep.equal([]);
    });

    it("reads flanneld's subnet.env fixture", async () => {
      const warnings: string[] = [];
      const previous = await readPreviousSubnets(path.join(fixturesDir(), 'subnet.env'), (m) => warnings.push(m));
      expect(present(previous)).to.deep.equal({ subnet: '10.1.31.0/24' });
      expect(warnings).to.deep.equal([]);
    });

    it('tolerates CRLF line ends and spaces around a line', async () => {
      const file = path.join(dir, 'subnet.env');
      await fs.writeFile(file, 'FLANNEL_NETWORK=10.0.0.0/8\r\n  FLANNEL_SUBNET=10.1.31.1/24  \r\n');
      expect(present(await readPreviousSubnets(file, () => undefined))).to.deep.equal({ subnet: '10.1.31.0/24' });
    });

    it('returns {} without a warning when the file is missing (a first start)', async () => {
      const warnings: string[] = [];
      const previous = await readPreviousSubnets(path.join(dir, 'absent/subnet.env'), (m) => warnings.push(m));
      expect(previous).to.deep.equal({});
      expect(warnings).to.deep.equal([]);
    });

    const garbled: { name: string; text: string; mentions: RegExp }[] = [
      { name: 'binary garbage', text: '\u0000\u0001\u00ff\u0010garbage', mentions: /no FLANNEL_SUBNET/ },
      { name: 'an empty file (a torn write)', text: '', mentions: /no FLANNEL_SUBNET/ },
      { name: 'a subnet that is not a network', text: 'FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.1.31.1\n', mentions: /"10\.1\.31\.1"/ },
      { name: 'a subnet of the wrong family', text: 'FLANNEL_SUBNET=fc00::1/64\n', mentions: /"fc00::1\/64"/ },
      { name: 'an IPv6 subnet that is not one', text: 'FLANNEL_IPV6_SUBNET=zz::1/64\n', mentions: /"zz::1\/64"/ },
    ];
    for (const c of garbled) {
      it(`returns {} and warns, naming the file, when it holds ${c.name}`, async () => {
        const file = path.join(dir, 'subnet.env');
        await fs.writeFile(file, c.text);
        const warnings: string[] = [];
        const previous = await readPreviousSubnets(file, (m) => warnings.push(m));
        expect(present(previous)).to.deep.equal({});
        expect(warnings).to.have.length(1);
        expect(warnings[0]).to.include(file);
        expect(warnings[0]).to.match(c.mentions);
      });
    }

    it('keeps the readable subnet when only the other one is garbled, and warns', async () => {
      const file = path.join(dir, 'subnet.env');
      await fs.writeFile(file, 'FLANNEL_SUBNET=10.1.31.1/24\nFLANNEL_IPV6_SUBNET=nonsense\n');
      const warnings: string[] = [];
      expect(present(await readPreviousSubnets(file, (m) => warnings.push(m)))).to.deep.equal({ subnet: '10.1.31.0/24' });
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.include(file);
    });

    it('returns {} and warns, naming the file, when it cannot be read', async () => {
      const file = path.join(dir, 'subnet.env');
      await fs.mkdir(file);
      const warnings: string[] = [];
      expect(present(await readPreviousSubnets(file, (m) => warnings.push(m)))).to.deep.equal({});
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.include(file).and.to.include('EISDIR');
    });
  });
});
