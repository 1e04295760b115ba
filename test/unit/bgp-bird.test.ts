/**
 * The bgp backend's BIRD layer without a network: the configuration it
 * writes (parsed by BIRD itself with `bird -p` where bird is installed),
 * what it refuses, and the control socket protocol: framing against a fake
 * BIRD on a Unix socket, and `show protocols all` as BIRD 2.0.12 printed it
 * (test/unit/fixtures/bird-show-protocols*.txt, captured from two BIRDs in
 * namespaces, one session up and one failing).
 */
import { expect } from 'chai';
import { execFile } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { BirdConfigError, asnOf, birdConfig, kernelMetricOf, peerProtocolName, type BirdConfigInput } from '../../backends/bgp/bird-config';
import {
  BirdCommandError, BirdConfigFileError, BirdControl, BirdControlError, birdConfigure, birdSessions, parseConfigure, parseProtocols,
  type BirdReply, type BirdReplyLine,
} from '../../backends/bgp/bird-control';
import { birdMissing, findBird } from '../../backends/bgp/bird-engine';

const FIXTURES = path.resolve(__dirname, '../../../test/unit/fixtures');

const BASE: BirdConfigInput = {
  routerId: '198.18.0.1',
  asn: 64512,
  ownSubnet: '10.244.1.0/24',
  network: '10.244.0.0/16',
  peers: [
    { name: 'mesh_198_18_0_2', ip: '198.18.0.2', asn: 64512 },
    { name: 'peer_198_18_0_253', ip: '198.18.0.253', asn: 64513, password: 'open sesame' },
  ],
  gracefulRestart: true,
  kernelMetric: 32,
};

/** A reply as the socket carries it, split into lines the way BirdControl does. */
function replyOf(text: string): BirdReply {
  const lines: BirdReplyLine[] = [];
  let last = 0;
  for (const line of text.split('\n')) {
    const m = /^(\d{4})[ -](.*)$/.exec(line);
    if (m) {
      last = Number(m[1]);
      lines.push({ code: last, text: m[2] });
    } else if (line.startsWith(' ')) lines.push({ code: last, text: line.slice(1) });
  }
  return { lines };
}

function birdParse(config: string): Promise<string | undefined> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-bird-'));
  const file = path.join(dir, 'bird.conf');
  writeFileSync(file, config);
  return new Promise((resolve) =>
    execFile(findBird() ?? 'bird', ['-p', '-c', file], (err, stdout, stderr) => {
      rmSync(dir, { recursive: true, force: true });
      resolve(err ? `${stderr}${stdout}`.trim() || err.message : undefined);
    }),
  );
}

/** A fake BIRD: greets, then answers each command line with `answer(cmd)` (raw socket text). */
async function fakeBird(answer: (cmd: string) => string | string[] | undefined): Promise<{ socketPath: string; commands: string[]; close(): void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-birdc-'));
  const socketPath = path.join(dir, 'bird.ctl');
  const commands: string[] = [];
  const server = net.createServer((sock) => {
    sock.write('0001 BIRD 2.0.12 ready.\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        commands.push(cmd);
        const out = answer(cmd);
        // Several chunks, apart in time so that they arrive apart, as a busy socket delivers them.
        const chunks = typeof out === 'string' ? [out] : out ?? [];
        chunks.forEach((chunk, i) => setTimeout(() => sock.write(chunk), 5 * i));
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    commands,
    close: () => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('bgp: BIRD', () => {
  describe('birdConfig', () => {
    const config = birdConfig(BASE);

    it('names peers after their address, the way BIRD protocol names allow', () => {
      expect(peerProtocolName('mesh', '198.18.0.2')).to.equal('mesh_198_18_0_2');
      expect(peerProtocolName('peer', '198.18.0.253')).to.equal('peer_198_18_0_253');
      expect(() => peerProtocolName('mesh', 'fc00::1')).to.throw(BirdConfigError, /not an IPv4 address/);
    });

    it('exports only BGP routes to the kernel, with the metric given, keeping its routes over a BIRD restart', () => {
      const kernel = /protocol kernel twill_kernel \{[\s\S]*?\n\}/.exec(config)?.[0] ?? '';
      expect(kernel).to.include('import none;');
      expect(kernel).to.include('export where source = RTS_BGP;');
      expect(kernel).to.include('metric 32;');
      expect(kernel).to.include('graceful restart on;');
      expect(kernel).to.include('merge paths off;');
      expect(kernel).to.include('persist off;');
      expect(config).to.match(/^router id 198\.18\.0\.1;$/m);
      expect(kernelMetricOf(config)).to.equal(32);
      expect(kernelMetricOf('protocol kernel other {\n  metric 32;\n}\n')).to.equal(undefined);
      expect(asnOf(config)).to.equal(64512);
      expect(asnOf(birdConfig({ ...BASE, asn: 4200000001 }))).to.equal(4200000001);
      expect(asnOf('protocol bgp x {\n  local as 1;\n}\n')).to.equal(undefined);
    });

    it('announces the own subnet as a blackhole the kernel never gets, and accepts only subnets inside the network that are not ours', () => {
      expect(config).to.include('protocol static twill_own {\n  ipv4;\n  route 10.244.1.0/24 blackhole;\n}');
      expect(config).to.include('if net ~ [ 10.244.1.0/24+ ] then reject;');
      expect(config).to.include('if net ~ [ 10.244.0.0/16{17,32} ] then accept;');
      expect(config).to.include('if proto = "twill_own" then accept;');
    });

    it('makes one session per peer from the template, with next hop self, graceful restart and the password', () => {
      expect(config).to.include('template bgp twill_peer {\n  local as 64512;\n  direct;\n  graceful restart on;\n');
      expect(config).to.include('    next hop self;');
      expect(config).to.include('protocol bgp mesh_198_18_0_2 from twill_peer {\n  neighbor 198.18.0.2 as 64512;\n}');
      // A router of another AS (eBGP) hands the nodes each other's subnets with their own AS in the path.
      expect(config.split('allow local as;').length - 1, 'allow local as only on the session with another AS').to.equal(1);
      expect(config).to.include('protocol bgp peer_198_18_0_253 from twill_peer {\n  neighbor 198.18.0.253 as 64513;\n  allow local as;\n  password "open sesame";\n}');
      expect(config).to.not.include('hold time');
      const off = birdConfig({ ...BASE, gracefulRestart: false, holdTime: 9 });
      expect(off).to.include('  graceful restart off;\n  hold time 9;\n');
    });

    it('refuses what BIRD would refuse or misread, naming the field', () => {
      const bad: [Partial<BirdConfigInput>, RegExp][] = [
        [{ routerId: '198.18.0' }, /routerId "198\.18\.0" is not an IPv4 address/],
        [{ asn: 0 }, /asn 0 is not an AS number/],
        [{ ownSubnet: '10.245.1.0/24' }, /ownSubnet "10\.245\.1\.0\/24" is not a subnet inside the network 10\.244\.0\.0\/16/],
        [{ ownSubnet: '10.244.0.0/16' }, /is not a subnet inside the network/],
        [{ network: '10.244.0.1/16' }, /network "10\.244\.0\.1\/16" is not an IPv4 network/],
        [{ kernelMetric: 0 }, /kernelMetric 0 is not an integer from 1/],
        [{ holdTime: 2 }, /holdTime 2 is not a whole number of seconds from 3 to 65535/],
        [{ peers: [{ name: 'Mesh-1', ip: '198.18.0.2', asn: 1 }] }, /peer name "Mesh-1" is not a BIRD protocol name/],
        [{ peers: [{ name: 'twill_kernel', ip: '198.18.0.2', asn: 1 }] }, /is not a BIRD protocol name/],
        [{ peers: [{ name: 'm', ip: '198.18.0.2', asn: 1 }, { name: 'm', ip: '198.18.0.3', asn: 1 }] }, /peer name "m" is given to two peers/],
        [{ peers: [{ name: 'm', ip: '198.18.0.300', asn: 1 }] }, /peer m ip "198\.18\.0\.300" is not an IPv4 address/],
        [{ peers: [{ name: 'm', ip: '198.18.0.2', asn: 4294967296 }] }, /peer m asn 4294967296 is not an AS number/],
      ];
      for (const [change, message] of bad) expect(() => birdConfig({ ...BASE, ...change }), JSON.stringify(change)).to.throw(BirdConfigError, message);
    });

    it('refuses a password BIRD cannot carry unchanged (quote, backslash, newline), without printing it', () => {
      for (const password of ['say "hi"', 'back\\slash', 'two\nlines', 'tab\there', '']) {
        const peers = [{ name: 'm', ip: '198.18.0.2', asn: 1, password }];
        let err: unknown;
        try {
          birdConfig({ ...BASE, peers });
        } catch (e) {
          err = e;
        }
        expect(err, JSON.stringify(password)).to.be.instanceOf(BirdConfigError);
        if (password.length > 2) expect((err as Error).message).to.not.include(password);
      }
      expect(birdConfig({ ...BASE, peers: [{ name: 'm', ip: '198.18.0.2', asn: 1, password: "it's #1 {ok}; $x" }] })).to.include('password "it\'s #1 {ok}; $x";');
    });

    it('lets a mesh peer announce its own subnet only; a router (no `only`) relays any', () => {
      const config = birdConfig({ ...BASE, peers: [{ name: 'mesh_198_18_0_2', ip: '198.18.0.2', asn: 64512, only: '10.244.2.0/24' }, { name: 'peer_198_18_0_253', ip: '198.18.0.253', asn: 65000 }] });
      expect(config).to.include('  if proto = "mesh_198_18_0_2" && net != 10.244.2.0/24 then reject;\n');
      expect(config).to.not.include('proto = "peer_198_18_0_253"');
      expect(() => birdConfig({ ...BASE, peers: [{ name: 'mesh_198_18_0_2', ip: '198.18.0.2', asn: 64512, only: BASE.ownSubnet }] })).to.throw(/apart from this node's/);
      expect(() => birdConfig({ ...BASE, peers: [{ name: 'mesh_198_18_0_2', ip: '198.18.0.2', asn: 64512, only: '10.9.0.0/24' }] })).to.throw(/is not a subnet of the network/);
    });

    describe('parsed by BIRD (bird -p)', function () {
      before(function () {
        const missing = birdMissing();
        if (missing) {
          console.log(`      skipped: ${missing}`);
          this.skip();
        }
      });

      it('accepts every shape of configuration twill writes', async () => {
        const inputs: BirdConfigInput[] = [
          BASE,
          { ...BASE, peers: [] },
          { ...BASE, gracefulRestart: false, holdTime: 3, kernelMetric: 4294967295 },
          { ...BASE, asn: 4200000000, ownSubnet: '10.244.255.252/30', peers: [{ name: peerProtocolName('peer', '198.19.255.254'), ip: '198.19.255.254', asn: 65000, password: "it's #1 {ok}; $x" }] },
          { ...BASE, peers: [{ name: 'mesh_198_18_0_2', ip: '198.18.0.2', asn: 64512, only: '10.244.2.0/24' }, { name: 'mesh_198_18_0_3', ip: '198.18.0.3', asn: 64512, only: '10.244.3.0/24' }] },
        ];
        for (const input of inputs) expect(await birdParse(birdConfig(input)), JSON.stringify(input)).to.equal(undefined);
      });

      it('refuses a quoted password that 2.0 cannot escape (why birdConfig refuses it first)', async () => {
        const config = birdConfig(BASE).replace('password "open sesame"', 'password "open \\" sesame"');
        expect(await birdParse(config)).to.match(/syntax error/);
      });
    });
  });

  describe('parseProtocols', () => {
    const all = parseProtocols(replyOf(readFileSync(path.join(FIXTURES, 'bird-show-protocols-all.txt'), 'utf8')));

    it('reads every protocol of `show protocols all`, in order', () => {
      expect(all.map((s) => `${s.name}/${s.proto}/${s.state}`)).to.deep.equal([
        'device1/Device/up', 'twill_kernel/Kernel/up', 'twill_own/Static/up', 'mesh_198_18_200_2/BGP/up', 'peer_198_18_200_3/BGP/start',
      ]);
    });

    it('reads an established session: neighbour, AS, routes', () => {
      expect(all[3]).to.deep.equal({
        name: 'mesh_198_18_200_2', proto: 'BGP', state: 'up', since: '23:17:28.170', info: 'Established',
        neighbor: '198.18.200.2', neighborAs: 64512, routesImported: 1, routesExported: 1,
      });
    });

    it('reads a failing session with its reason and last error, and no route counts (its channel is down)', () => {
      expect(all[4]).to.deep.equal({
        name: 'peer_198_18_200_3', proto: 'BGP', state: 'start', since: '23:17:45.074', info: 'Active        Socket: No route to host',
        neighbor: '198.18.200.3', neighborAs: 64513, lastError: 'Socket: No route to host',
      });
    });

    it('reads the route counts of other protocols too', () => {
      expect(all[1]).to.include({ name: 'twill_kernel', routesImported: 0, routesExported: 1 });
      expect(all[2]).to.include({ name: 'twill_own', routesImported: 1, routesExported: 0 });
    });

    it('reads `show protocols`, where later protocols are continuation lines of the first', () => {
      const short = parseProtocols(replyOf(readFileSync(path.join(FIXTURES, 'bird-show-protocols.txt'), 'utf8')));
      expect(short.map((s) => [s.name, s.info])).to.deep.equal([
        ['device1', ''], ['twill_kernel', ''], ['twill_own', ''], ['mesh_198_18_200_2', 'Established'], ['peer_198_18_200_3', 'Active        Socket: No route to host'],
      ]);
    });

    it('reads a full date as `since` (timeformat protocol iso long, what twill configures)', () => {
      const [s] = parseProtocols(replyOf('2002-Name       Proto      Table      State  Since         Info\n1002-mesh_198_18_0_2 BGP        ---        start  2026-12-04 23:16:54  Connect       \n0000 \n'));
      expect(s).to.deep.equal({ name: 'mesh_198_18_0_2', proto: 'BGP', state: 'start', since: '2026-12-04 23:16:54', info: 'Connect' });
    });
  });

  describe('parseConfigure', () => {
    it('tells reconfigured, in progress, queued and nothing to do apart', () => {
      expect(parseConfigure('configure', replyOf('0002-Reading configuration from /x\n0003 Reconfigured\n'))).to.equal('reconfigured');
      expect(parseConfigure('configure', replyOf('0002-Reading configuration from /x\n0004 Reconfiguration in progress\n'))).to.equal('in-progress');
      expect(parseConfigure('configure', replyOf('0002-Reading configuration from /x\n0005 Reconfiguration already in progress, queueing new config\n'))).to.equal('queued');
      expect(parseConfigure('configure confirm', replyOf('0019 Nothing to do\n'))).to.equal('nothing-to-do');
      expect(() => parseConfigure('configure', replyOf('0006 Reconfiguration ignored, shutting down\n'))).to.throw(BirdCommandError, /shutting down/);
    });
  });

  describe('BirdControl', () => {
    it('sends one command at a time and joins a reply split across chunks and continuation lines', async () => {
      const protocols = '2002-Name Proto Table State Since Info\n1002-mesh_1 BGP --- up 2026-12-04 23:16:54  Established\n1006-  BGP state: Established\n    Neighbor address: 198.18.0.2\n0000 \n';
      // Cut inside a word, inside a code and right after a newline.
      const cuts = [protocols.indexOf('ished'), protocols.indexOf('0000') + 2, protocols.indexOf('1006-')];
      cuts.sort((x, y) => x - y);
      const chunks = [0, ...cuts].map((from, i) => protocols.slice(from, cuts[i] ?? protocols.length));
      const fake = await fakeBird((cmd) => (cmd === 'show protocols all' ? chunks : '0013 Daemon is up and running\n'));
      const control = await BirdControl.connect(fake.socketPath);
      try {
        const [status, protocols] = await Promise.all([control.command('show status'), control.command('show protocols all')]);
        expect(status.lines).to.deep.equal([{ code: 13, text: 'Daemon is up and running' }]);
        expect(parseProtocols(protocols)).to.deep.equal([{ name: 'mesh_1', proto: 'BGP', state: 'up', since: '2026-12-04 23:16:54', info: 'Established', neighbor: '198.18.0.2' }]);
        expect(fake.commands).to.deep.equal(['show status', 'show protocols all']);
        expect(await birdSessions(fake.socketPath)).to.have.length(1);
      } finally {
        control.close();
        fake.close();
      }
    });

    it('rejects a refused command with its code and text, and stays usable', async () => {
      const fake = await fakeBird((cmd) => {
        if (cmd === 'show foo') return '9001 syntax error, unexpected CF_SYM_UNDEFINED\n';
        if (cmd.startsWith('configure')) return '0002-Reading configuration from /run/twill/bird-1/bird.conf\n8002 /run/twill/bird-1/bird.conf:12:9 syntax error, unexpected CF_SYM_UNDEFINED, expecting TIME\n';
        return '0000 \n';
      });
      const control = await BirdControl.connect(fake.socketPath);
      try {
        const err = await control.command('show foo').then(() => undefined, (e: unknown) => e);
        expect(err).to.be.instanceOf(BirdCommandError).and.include({ code: 9001, command: 'show foo' });
        const conf = await birdConfigure(control, '/run/twill/bird-1/bird.conf').then(() => undefined, (e: unknown) => e);
        expect(conf).to.be.instanceOf(BirdConfigFileError).and.include({ code: 8002, file: '/run/twill/bird-1/bird.conf', line: 12, column: 9 });
        expect((conf as Error).message).to.equal('BIRD cannot use the configuration: /run/twill/bird-1/bird.conf:12:9 syntax error, unexpected CF_SYM_UNDEFINED, expecting TIME');
        expect(fake.commands[1]).to.equal('configure "/run/twill/bird-1/bird.conf"');
        expect((await control.command('show status')).lines).to.deep.equal([{ code: 0, text: '' }]);
        const twoLines = await control.command('show status\nshutdown').then(() => undefined, (e: unknown) => e);
        expect(twoLines).to.be.instanceOf(TypeError);
      } finally {
        control.close();
        fake.close();
      }
    });

    it('rejects with BirdControlError when nobody listens or BIRD stays silent, and closes the connection', async () => {
      const missing = await BirdControl.connect('/nonexistent/bird.ctl').then(() => undefined, (e: unknown) => e);
      expect(missing).to.be.instanceOf(BirdControlError);
      expect((missing as Error).message).to.match(/cannot reach BIRD on \/nonexistent\/bird\.ctl/);
      const fake = await fakeBird(() => undefined);
      const control = await BirdControl.connect(fake.socketPath);
      try {
        const silent = await control.command('show status', 100).then(() => undefined, (e: unknown) => e);
        expect(silent).to.be.instanceOf(BirdControlError);
        expect((silent as Error).message).to.match(/did not answer "show status" .* within 100 ms/);
        const after = await control.command('show status').then(() => undefined, (e: unknown) => e);
        expect(after).to.be.instanceOf(BirdControlError);
      } finally {
        control.close();
        fake.close();
      }
    });
  });
});
