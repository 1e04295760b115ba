import { expect } from 'chai';
import { readFileSync } from 'fs';
import { IP } from '../../lib/ip';
import {
  InterfaceSelectionError,
  linuxSystem,
  selectInterface,
  type InterfaceOptions,
  type SystemRoute,
  type SystemView,
} from '../../lib/iface';

interface FakeLink {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  readonly ipv4?: string[];
  readonly ipv6?: string[];
}

interface FakeRoute {
  /** "a.b.c.d/len" or an IPv6 prefix */
  readonly dst: string;
  readonly iface: string;
  readonly metric?: number;
}

/** A SystemView over fixed links and routes; `vanished` links are listed by routes but gone from the interface list. */
function fakeSystem(links: readonly FakeLink[], routes: readonly FakeRoute[], vanished: readonly string[] = []): SystemView {
  return {
    interfaces: () =>
      links.filter((l) => !vanished.includes(l.name)).map((l) => ({ name: l.name, ipv4: [...(l.ipv4 ?? [])], ipv6: [...(l.ipv6 ?? [])] })),
    linkInfo: (name) => {
      const l = links.find((x) => x.name === name && !vanished.includes(name));
      return l ? { index: l.index, mtu: l.mtu } : undefined;
    },
    routes: () => toRoutes(routes.filter((r) => !r.dst.includes(':')), 4),
    routes6: () => toRoutes(routes.filter((r) => r.dst.includes(':')), 6),
  };
}

function toRoutes(routes: readonly FakeRoute[], family: 4 | 6): SystemRoute[] {
  return routes.map((r) => {
    const [addr, len] = r.dst.split('/');
    return { iface: r.iface, dst: IP.parse(addr, family).value, mask: Number(len), metric: r.metric ?? 0 };
  });
}

/**
 * A node with a loopback, two uplinks, a tunnel, an IPv6-only link and a
 * link without addresses. The default route leaves by eth0 (the lower
 * metric); 192.168.1.0/24 by wg0 is more specific than 192.168.0.0/16 by eth1.
 */
const LINKS: readonly FakeLink[] = [
  { name: 'lo', index: 1, mtu: 65536, ipv4: ['127.0.0.1'], ipv6: ['::1'] },
  { name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.0.5', '10.0.0.6'], ipv6: ['fd00::5'] },
  { name: 'eth1', index: 3, mtu: 9000, ipv4: ['192.168.7.10'] },
  { name: 'wg0', index: 4, mtu: 1420, ipv4: ['172.16.0.1'] },
  { name: 'v6only', index: 5, mtu: 1500, ipv6: ['fd00:1::1'] },
  { name: 'bare0', index: 6, mtu: 1500 },
];

const ROUTES: readonly FakeRoute[] = [
  { dst: '0.0.0.0/0', iface: 'eth1', metric: 600 },
  { dst: '0.0.0.0/0', iface: 'eth0', metric: 100 },
  { dst: '10.0.0.0/24', iface: 'eth0' },
  { dst: '192.168.0.0/16', iface: 'eth1' },
  { dst: '192.168.1.0/24', iface: 'wg0' },
  { dst: '172.16.0.0/12', iface: 'wg0', metric: 50 },
  { dst: '172.16.0.0/12', iface: 'eth1', metric: 10 },
  { dst: '127.0.0.0/8', iface: 'lo' },
];

const SYSTEM = fakeSystem(LINKS, ROUTES);

/** Runs `fn`, expecting an InterfaceSelectionError; returns it. */
function selectionError(fn: () => unknown): InterfaceSelectionError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(InterfaceSelectionError);
    return err as InterfaceSelectionError;
  }
  throw new Error('expected an InterfaceSelectionError, but nothing was thrown');
}

interface Chosen {
  name: string;
  ipv4?: string;
  publicIP: string;
}

function chosen(opts: InterfaceOptions, sys: SystemView = SYSTEM): Chosen {
  const s = selectInterface(opts, sys);
  return { name: s.iface.name, ipv4: s.iface.ipv4, publicIP: s.publicIP };
}

describe('selectInterface', () => {
  describe('chooses', () => {
    const cases: { name: string; opts: InterfaceOptions; expected: Chosen }[] = [
      // --iface
      { name: '--iface by name', opts: { iface: ['eth1'] }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: '--iface by IPv4 address, publishing that address', opts: { iface: ['10.0.0.6'] }, expected: { name: 'eth0', ipv4: '10.0.0.6', publicIP: '10.0.0.6' } },
      { name: "--iface by IPv6 address, publishing the interface's first IPv4 address", opts: { iface: ['fd00::5'] }, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '10.0.0.5' } },
      { name: '--iface by an IPv6 address written in another form', opts: { iface: ['FD00:0:0:0:0:0:0:5'] }, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '10.0.0.5' } },
      { name: 'the first --iface that matches', opts: { iface: ['missing0', '192.168.7.10', 'eth0'] }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: 'the first --iface with an IPv4 address, skipping those without', opts: { iface: ['bare0', 'v6only', 'wg0'] }, expected: { name: 'wg0', ipv4: '172.16.0.1', publicIP: '172.16.0.1' } },
      {
        name: '--iface over every other rule',
        opts: { iface: ['wg0'], ifaceRegex: ['^eth'], ifaceCanReach: '10.0.0.1', publicIP: '192.168.7.10' },
        expected: { name: 'wg0', ipv4: '172.16.0.1', publicIP: '192.168.7.10' },
      },
      // --iface-regex
      { name: '--iface-regex on an address', opts: { ifaceRegex: ['^192\\.168\\.'] }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: '--iface-regex on the matching address of several', opts: { ifaceRegex: ['\\.6$'] }, expected: { name: 'eth0', ipv4: '10.0.0.6', publicIP: '10.0.0.6' } },
      { name: '--iface-regex on a name', opts: { ifaceRegex: ['^wg[0-9]+$'] }, expected: { name: 'wg0', ipv4: '172.16.0.1', publicIP: '172.16.0.1' } },
      {
        name: '--iface-regex on addresses before names',
        opts: { ifaceRegex: ['^eth0$|^172\\.16\\.'] },
        expected: { name: 'wg0', ipv4: '172.16.0.1', publicIP: '172.16.0.1' },
      },
      { name: 'the first --iface-regex that matches', opts: { ifaceRegex: ['^nothing$', '^eth1$', '^eth0$'] }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: '--iface-regex on a name, skipping interfaces without IPv4', opts: { ifaceRegex: ['^(v6only|bare0|eth0)$'] }, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '10.0.0.5' } },
      {
        name: '--iface-regex over --iface-can-reach and --public-ip',
        opts: { ifaceRegex: ['^lo$'], ifaceCanReach: '192.168.1.1', publicIP: '10.0.0.5' },
        expected: { name: 'lo', ipv4: '127.0.0.1', publicIP: '10.0.0.5' },
      },
      // --iface-can-reach
      { name: '--iface-can-reach by the longest matching route', opts: { ifaceCanReach: '192.168.1.77' }, expected: { name: 'wg0', ipv4: '172.16.0.1', publicIP: '172.16.0.1' } },
      { name: '--iface-can-reach by a shorter route when no longer one matches', opts: { ifaceCanReach: '192.168.2.1' }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: '--iface-can-reach by the lower metric among equal prefixes', opts: { ifaceCanReach: '172.20.0.1' }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: '--iface-can-reach by the default route when nothing else matches', opts: { ifaceCanReach: '203.0.113.9' }, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '10.0.0.5' } },
      {
        name: '--iface-can-reach over the --public-ip holder',
        opts: { ifaceCanReach: '10.0.0.99', publicIP: '192.168.7.10' },
        expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '192.168.7.10' },
      },
      // --public-ip, then the default route
      { name: 'the interface holding --public-ip', opts: { publicIP: '192.168.7.10' }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '192.168.7.10' } },
      { name: 'the --public-ip address among several on its interface', opts: { publicIP: '10.0.0.6' }, expected: { name: 'eth0', ipv4: '10.0.0.6', publicIP: '10.0.0.6' } },
      { name: 'the default-route interface when no interface holds --public-ip (NAT)', opts: { publicIP: '198.18.0.3' }, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '198.18.0.3' } },
      { name: 'the default-route interface of lowest metric when nothing is given', opts: {}, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '10.0.0.5' } },
      { name: 'the default-route interface when the options are empty lists', opts: { iface: [], ifaceRegex: [] }, expected: { name: 'eth0', ipv4: '10.0.0.5', publicIP: '10.0.0.5' } },
      // --public-ip overrides what is published
      { name: '--iface, publishing --public-ip instead of its own address', opts: { iface: ['eth1'], publicIP: '198.18.0.3' }, expected: { name: 'eth1', ipv4: '192.168.7.10', publicIP: '198.18.0.3' } },
    ];
    for (const c of cases) {
      it(c.name, () => {
        expect(chosen(c.opts)).to.deep.equal(c.expected);
      });
    }

    it("reports the chosen interface's index, MTU and first IPv6 address", () => {
      const s = selectInterface({ iface: ['eth0'] }, SYSTEM);
      expect(s.iface).to.deep.equal({ name: 'eth0', index: 2, mtu: 1500, ipv4: '10.0.0.5', ipv6: 'fd00::5' });
      expect(s.reason).to.include('--iface eth0');
    });

    it('says why it chose, for the log', () => {
      expect(selectInterface({ ifaceCanReach: '192.168.1.77' }, SYSTEM).reason).to.include('192.168.1.77').and.to.include('wg0');
      expect(selectInterface({}, SYSTEM).reason).to.include('default route');
    });

    it('uses an interface without IPv4 from the default route when --public-ip gives the address', () => {
      const sys = fakeSystem(LINKS, [{ dst: '0.0.0.0/0', iface: 'v6only' }]);
      expect(chosen({ publicIP: '198.18.0.3' }, sys)).to.deep.equal({ name: 'v6only', ipv4: undefined, publicIP: '198.18.0.3' });
    });
  });

  describe('refuses', () => {
    const noDefault = fakeSystem(LINKS, ROUTES.filter((r) => r.dst !== '0.0.0.0/0'));
    const cases: { name: string; opts: InterfaceOptions; sys?: SystemView; flag: string; message: RegExp }[] = [
      { name: 'an --iface that names no interface', opts: { iface: ['eth9'] }, flag: '--iface', message: /none of --iface eth9 names an interface with an IPv4 address/ },
      { name: 'an --iface address that no interface holds', opts: { iface: ['10.9.9.9'] }, flag: '--iface', message: /10\.9\.9\.9/ },
      { name: 'a list of --iface where none has an IPv4 address', opts: { iface: ['bare0', 'v6only'] }, flag: '--iface', message: /bare0, v6only/ },
      { name: 'an --iface-regex that is not a regular expression', opts: { ifaceRegex: ['eth(0'] }, flag: '--iface-regex', message: /"eth\(0" is not a valid regular expression/ },
      { name: 'an --iface-regex that matches nothing', opts: { ifaceRegex: ['^ens', '^enp'] }, flag: '--iface-regex', message: /--iface-regex \^ens, \^enp/ },
      { name: 'an --iface-regex matching only interfaces without IPv4', opts: { ifaceRegex: ['^(bare0|v6only)$'] }, flag: '--iface-regex', message: /no address or name of an interface with an IPv4 address matches/ },
      { name: 'an --iface-can-reach that is not an address', opts: { ifaceCanReach: 'gateway.example' }, flag: '--iface-can-reach', message: /"gateway\.example" is not an IPv4 or IPv6 address/ },
      { name: 'an IPv6 --iface-can-reach that no IPv6 route reaches', opts: { ifaceCanReach: 'fd00::1' }, flag: '--iface-can-reach', message: /no route reaches fd00::1/ },
      { name: 'an --iface-can-reach that no route reaches', opts: { ifaceCanReach: '203.0.113.9' }, sys: noDefault, flag: '--iface-can-reach', message: /no route reaches 203\.0\.113\.9/ },
      { name: 'a --public-ip that is not an address', opts: { publicIP: '198.18.0' }, flag: '--public-ip', message: /"198\.18\.0" is not an IPv4 address/ },
      { name: 'an IPv6 --public-ip', opts: { publicIP: 'fd00::5' }, flag: '--public-ip', message: /is not an IPv4 address/ },
      { name: 'a bad --public-ip even when --iface is given', opts: { iface: ['eth0'], publicIP: 'nat' }, flag: '--public-ip', message: /"nat"/ },
      { name: 'a node without a default route when nothing is given', opts: {}, sys: noDefault, flag: '--iface', message: /no default route.*give --iface/ },
      {
        name: 'a default-route interface without IPv4 when --public-ip is not given',
        opts: {},
        sys: fakeSystem(LINKS, [{ dst: '0.0.0.0/0', iface: 'v6only' }]),
        flag: '--iface',
        message: /v6only has no IPv4 address; give --public-ip/,
      },
      {
        name: 'a route leaving by an interface that has vanished',
        opts: { ifaceCanReach: '192.168.1.77' },
        sys: fakeSystem(LINKS, ROUTES, ['wg0']),
        flag: '--iface-can-reach',
        message: /wg0 has vanished/,
      },
      {
        name: 'an --iface-can-reach whose route leaves by an interface without IPv4',
        opts: { ifaceCanReach: '198.51.100.1' },
        sys: fakeSystem(LINKS, [...ROUTES, { dst: '198.51.100.0/24', iface: 'v6only' }]),
        flag: '--iface-can-reach',
        message: /v6only has no IPv4 address/,
      },
    ];
    for (const c of cases) {
      it(`${c.name}, naming ${c.flag}`, () => {
        const err = selectionError(() => selectInterface(c.opts, c.sys ?? SYSTEM));
        expect(err.flag).to.equal(c.flag);
        expect(err.message).to.match(c.message);
      });
    }
  });

  describe('by IPv6 addresses (flanneld issue #2081)', () => {
    /** eth0 and eth1 hold IPv6 on separate prefixes; the IPv6 default route leaves by eth1. */
    const V6_LINKS: readonly FakeLink[] = [
      { name: 'lo', index: 1, mtu: 65536, ipv4: ['127.0.0.1'], ipv6: ['::1'] },
      { name: 'eth0', index: 2, mtu: 1500, ipv6: ['fd00:198:18::1', 'fd00:198:18::9'] },
      { name: 'eth1', index: 3, mtu: 9000, ipv4: ['192.168.7.10'], ipv6: ['fd00:7::10'] },
      { name: 'bare0', index: 6, mtu: 1500 },
    ];
    const V6_ROUTES: readonly FakeRoute[] = [
      { dst: '0.0.0.0/0', iface: 'eth1' },
      { dst: '::/0', iface: 'eth1', metric: 1024 },
      { dst: 'fd00:198:18::/64', iface: 'eth0', metric: 256 },
      { dst: 'fd00:198::/32', iface: 'eth1', metric: 256 },
      { dst: 'fd00:7::/64', iface: 'eth1', metric: 256 },
    ];
    const sys = fakeSystem(V6_LINKS, V6_ROUTES);
    const v6only = (opts: InterfaceOptions) => {
      const s = selectInterface({ ...opts, wantIPv4: false, wantIPv6: true }, sys);
      return { name: s.iface.name, publicIP: s.publicIP, publicIPv6: s.publicIPv6 };
    };

    it('--iface-regex matching an IPv6 address selects its interface and publishes that address (IPv6 only)', () => {
      expect(v6only({ ifaceRegex: ['::9$'] })).to.deep.equal({ name: 'eth0', publicIP: '0.0.0.0', publicIPv6: 'fd00:198:18::9' });
    });
    it('--iface-regex matching an IPv6 address selects its interface in dual stack too, publishing its IPv4 and that IPv6 address', () => {
      const s = selectInterface({ ifaceRegex: ['^fd00:7:'], wantIPv6: true }, sys);
      expect({ name: s.iface.name, publicIP: s.publicIP, publicIPv6: s.publicIPv6 }).to.deep.equal({ name: 'eth1', publicIP: '192.168.7.10', publicIPv6: 'fd00:7::10' });
    });
    it('--iface-can-reach an IPv6 address follows the longest IPv6 route', () => {
      expect(v6only({ ifaceCanReach: 'fd00:198:18::77' }).name).to.equal('eth0');
      expect(v6only({ ifaceCanReach: 'fd00:198:99::1' }).name).to.equal('eth1');
      expect(selectInterface({ ifaceCanReach: 'fd00:198:18::77', wantIPv6: true }, fakeSystem(V6_LINKS.map((l) => (l.name === 'eth0' ? { ...l, ipv4: ['198.18.0.1'] } : l)), V6_ROUTES)).iface.name).to.equal('eth0');
    });
    it('--iface-can-reach an IPv6 address with only the IPv6 default route takes that route', () => {
      expect(v6only({ ifaceCanReach: '2001:db8::1' }).name).to.equal('eth1');
    });
    it('--iface by name takes an interface with only IPv6 addresses (IPv6 only)', () => {
      expect(v6only({ iface: ['eth0'] })).to.deep.equal({ name: 'eth0', publicIP: '0.0.0.0', publicIPv6: 'fd00:198:18::1' });
    });
    it('--iface by IPv6 address publishes that address (IPv6 only)', () => {
      expect(v6only({ iface: ['FD00:198:18:0:0:0:0:9'] }).publicIPv6).to.equal('fd00:198:18::9');
    });
    it('without options takes the IPv6 default-route interface (IPv6 only)', () => {
      const s = selectInterface({ wantIPv4: false, wantIPv6: true }, sys);
      expect(s.iface.name).to.equal('eth1');
      expect(s.reason).to.include('IPv6 default route');
    });
    it('publishes PublicIP 0.0.0.0 whatever --public-ip says (IPv6 only), and says the flag is ignored', () => {
      const s = selectInterface({ iface: ['eth1'], publicIP: '192.168.7.10', wantIPv4: false, wantIPv6: true }, sys);
      expect(s.publicIP).to.equal('0.0.0.0');
      expect(s.reason).to.include('--public-ip 192.168.7.10 is ignored (EnableIPv4 is false)');
    });
        it('takes the interface holding --public-ipv6 before the default route (IPv6 only)', () => {
      expect(v6only({ publicIPv6: 'fd00:198:18::9' })).to.deep.equal({ name: 'eth0', publicIP: '0.0.0.0', publicIPv6: 'fd00:198:18::9' });
    });
    it('refuses an --iface without a global IPv6 address (IPv6 only), naming --iface', () => {
      const err = selectionError(() => selectInterface({ iface: ['bare0'], wantIPv4: false, wantIPv6: true }, sys));
      expect(err.flag).to.equal('--iface');
      expect(err.message).to.equal('none of --iface bare0 names an interface with a global IPv6 address');
    });
    it('refuses a node without an IPv6 default route when nothing is given (IPv6 only)', () => {
      const err = selectionError(() => selectInterface({ wantIPv4: false, wantIPv6: true }, fakeSystem(V6_LINKS, V6_ROUTES.filter((r) => r.dst !== '::/0'))));
      expect(err.message).to.match(/no IPv6 default route/);
    });
  });

  describe('on this machine (linuxSystem)', () => {
    it('selects lo for --iface lo, with 127.0.0.1 and its real index and MTU', function () {
      if (process.platform !== 'linux') this.skip();
      const s = selectInterface({ iface: ['lo'] }, linuxSystem);
      const sysfs = (file: string) => Number(readFileSync(`/sys/class/net/lo/${file}`, 'utf8').trim());
      expect(s.iface.name).to.equal('lo');
      expect(s.iface.ipv4).to.equal('127.0.0.1');
      expect(s.publicIP).to.equal('127.0.0.1');
      expect(s.iface.index).to.equal(sysfs('ifindex'));
      expect(s.iface.mtu).to.equal(sysfs('mtu'));
      expect(s.iface.index).to.be.a('number').and.to.be.greaterThan(0);
    });

    it('selects lo for --iface 127.0.0.1, by its address', function () {
      if (process.platform !== 'linux') this.skip();
      expect(selectInterface({ iface: ['127.0.0.1'] }, linuxSystem).iface.name).to.equal('lo');
    });

    it('reads /proc/net/ipv6_route: --iface-can-reach ::1 leaves by lo', function () {
      if (process.platform !== 'linux' || !(linuxSystem.routes6?.() ?? []).some((r) => r.dst === 1n && r.mask === 128)) this.skip();
      expect(selectInterface({ ifaceCanReach: '::1' }, linuxSystem).iface.name).to.equal('lo');
    });
  });
});
