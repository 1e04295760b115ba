/**
 * The wireguard backend's pure parts: keys and the key file, flanneld's
 * config keys, the lease's BackendData, and what wireguard-go is told.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decodeLeaseAttrs, encodeLeaseAttrs } from '../../lib/subnet';
import { KeyFileError, generateKeyPair, hexToKey, keyToHex, loadOrCreateKey, publicKeyOf } from '../../backends/wireguard/keys';
import { configLines, greetingRequests, newPeers, type WantedDevice } from '../../backends/wireguard/peer-config';
import { wireguardSettings } from '../../backends/wireguard/settings';
import { peerPublicKey } from '../../backends/wireguard';
import { autoEndpoint, formatEndpoint, isPrivateAddress } from '../../backends/wireguard/endpoint';
import { ConfigError } from '../../lib/config';
import type { LinkInfo, Netlink } from '../../lib/netlink';
import { assignedTo, backendFactory, type LocalNode } from '../../backends';
import type { DevicePeer, DeviceState } from '../../backends/wireguard/uapi';
import { assignPeers } from '../../backends';
import { IPNet } from '../../lib/ip';
import type { Lease, LeaseAttrs } from '../../lib/subnet';

// RFC 7748 §6.1: Alice's X25519 private and public keys.
const ALICE_PRIVATE = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
const ALICE_PUBLIC = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64');

describe('wireguard', () => {
  describe('keys', () => {
    it('derives the RFC 7748 public key from its private key', () => {
      expect(publicKeyOf(ALICE_PRIVATE)).to.equal(ALICE_PUBLIC);
    });

    it('makes 32-byte key pairs whose public key matches the private one', () => {
      const pair = generateKeyPair();
      expect(Buffer.from(pair.privateKey, 'base64')).to.have.length(32);
      expect(publicKeyOf(pair.privateKey)).to.equal(pair.publicKey);
      expect(hexToKey(keyToHex(pair.publicKey))).to.equal(pair.publicKey);
    });

    describe('the key file', () => {
      let dir: string;
      beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'twill-wgkey-'))));
      afterEach(() => rmSync(dir, { recursive: true, force: true }));

      it('is made with mode 0600 (directories too) and reused on the next start', () => {
        const file = path.join(dir, 'sub', 'wgkey');
        const first = loadOrCreateKey(file);
        expect(first.created).to.equal(true);
        expect(statSync(file).mode & 0o777).to.equal(0o600);
        expect(readFileSync(file, 'utf8')).to.equal(first.privateKey);
        const again = loadOrCreateKey(file);
        expect(again).to.deep.equal({ ...first, created: false });
      });

      it('reads a key written by `wg genkey` (with its newline)', () => {
        const file = path.join(dir, 'wgkey');
        writeFileSync(file, `${ALICE_PRIVATE}\n`);
        expect(loadOrCreateKey(file).publicKey).to.equal(ALICE_PUBLIC);
      });

      it('refuses a file that holds no key, naming the file, and leaves it as it was', () => {
        const file = path.join(dir, 'wgkey');
        writeFileSync(file, 'not a key');
        expect(() => loadOrCreateKey(file)).to.throw(KeyFileError, file).with.property('message').that.includes('does not hold a private key');
        expect(readFileSync(file, 'utf8')).to.equal('not a key');
      });
    });
  });

  describe('settings', () => {
    const cfg = (settings: Record<string, unknown>) => ({ type: 'wireguard', settings });

    it('has flanneld\'s defaults: ListenPort 51820, ListenPortV6 51821, no PSK, keepalive off, Mode separate', () => {
      expect(wireguardSettings(cfg({}))).to.deep.equal({ listenPort: 51820, listenPortV6: 51821, keepalive: 0, mode: 'separate' });
    });

    it('reads the keys case-insensitively, as flanneld', () => {
      expect(wireguardSettings(cfg({ listenport: 51900, listenportv6: 51901, psk: ALICE_PUBLIC, persistentkeepaliveinterval: 25, mode: 'Auto' })))
        .to.deep.equal({ listenPort: 51900, listenPortV6: 51901, psk: ALICE_PUBLIC, keepalive: 25, mode: 'auto' });
    });

    it('takes every flanneld Mode, ipv6 included; one port for both families is fine with one device', () => {
      for (const mode of ['separate', 'auto', 'ipv4', 'ipv6']) expect(wireguardSettings(cfg({ Mode: mode })).mode).to.equal(mode);
      expect(wireguardSettings(cfg({ Mode: 'auto', ListenPort: 51820, ListenPortV6: 51820 })).listenPortV6).to.equal(51820);
    });

    it('refuses a bad ListenPortV6 or Mode, naming the key', () => {
      expect(() => wireguardSettings(cfg({ ListenPortV6: 0 }))).to.throw(ConfigError, 'Backend.ListenPortV6: 0 is out of range');
      expect(() => wireguardSettings(cfg({ ListenPortV6: 51820 }))).to.throw(ConfigError, 'Backend.ListenPortV6: 51820 is also the ListenPort');
      expect(() => wireguardSettings(cfg({ Mode: 'dual' }))).to.throw(ConfigError, 'Backend.Mode: "dual" is not one of separate, auto, ipv4, ipv6');
    });
  });

  describe('lease BackendData', () => {
    it('is flanneld\'s {"PublicKey": ...}, byte for byte in the lease', () => {
      const text = encodeLeaseAttrs({ publicIP: '198.18.0.1', publicIPv6: null, backendType: 'wireguard', backendData: { PublicKey: ALICE_PUBLIC } });
      expect(text).to.equal(`{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"${ALICE_PUBLIC}"}}`);
      expect(peerPublicKey(decodeLeaseAttrs(text).backendData)).to.deep.equal({ key: ALICE_PUBLIC });
    });

    it('says what is wrong with a peer\'s missing or bad PublicKey', () => {
      expect(peerPublicKey(undefined)).to.deep.equal({ problem: 'its lease has no BackendData.PublicKey' });
      expect(peerPublicKey({ PublicKey: 7 })).to.deep.equal({ problem: 'its lease\'s BackendData.PublicKey is 7, not a string' });
      expect((peerPublicKey({ PublicKey: 'abc' }) as { problem: string }).problem).to.include('"abc" is not a base64 WireGuard key');
    });
  });

  describe('what wireguard-go is told', () => {
    const peerA = generateKeyPair().publicKey;
    const peerB = generateKeyPair().publicKey;
    const own = generateKeyPair();
    const want: WantedDevice = {
      privateKey: own.privateKey, listenPort: 51820, keepalive: 0,
      peers: [{ publicKey: peerA, endpoint: '198.18.0.2:51820', allowedIPs: ['10.244.2.0/24'] }],
    };
    const held = (peers: DeviceState['peers']): DeviceState => ({ privateKey: keyToHex(own.privateKey), listenPort: 51820, peers });
    const peerAHeld = { publicKey: keyToHex(peerA), presharedKey: '0'.repeat(64), endpoint: '198.18.0.2:51820', allowedIPs: ['10.244.2.0/24'], keepalive: 0, lastHandshakeSec: 1, rxBytes: 1, txBytes: 1 };

    it('configures a fresh wireguard-go completely', () => {
      expect(configLines(want, { listenPort: 0, peers: [] })).to.deep.equal([
        `private_key=${keyToHex(own.privateKey)}`, 'listen_port=51820',
        `public_key=${keyToHex(peerA)}`, `preshared_key=${'0'.repeat(64)}`, 'endpoint=198.18.0.2:51820',
        'persistent_keepalive_interval=0', 'replace_allowed_ips=true', 'allowed_ip=10.244.2.0/24',
      ]);
    });

    it('says nothing when wireguard-go already holds the plan (no session is disturbed)', () => {
      expect(configLines(want, held([peerAHeld]))).to.deep.equal([]);
    });

    it('removes a peer it does not plan and rewrites one whose subnet changed', () => {
      const stray = { ...peerAHeld, publicKey: keyToHex(peerB) };
      const moved = { ...peerAHeld, allowedIPs: ['10.244.9.0/24'] };
      const lines = configLines(want, held([moved, stray]));
      expect(lines.slice(0, 2)).to.deep.equal([`public_key=${keyToHex(peerB)}`, 'remove=true']);
      expect(lines).to.include('allowed_ip=10.244.2.0/24');
    });

    it('sets the PSK on every peer', () => {
      expect(configLines({ ...want, psk: ALICE_PUBLIC }, held([peerAHeld]))).to.include(`preshared_key=${keyToHex(ALICE_PUBLIC)}`);
    });

    it('greets only new peers, and only when no keepalive is configured', () => {
      expect(newPeers(want, held([]))).to.deep.equal([keyToHex(peerA)]);
      expect(newPeers(want, held([peerAHeld]))).to.deep.equal([]);
      const [on, off] = greetingRequests([keyToHex(peerA)], 0);
      expect(on).to.deep.equal([`public_key=${keyToHex(peerA)}`, 'persistent_keepalive_interval=25']);
      expect(off).to.deep.equal([`public_key=${keyToHex(peerA)}`, 'persistent_keepalive_interval=0']);
      expect(greetingRequests([keyToHex(peerA)], 25)).to.deep.equal([[], []]);
    });
  });

  describe('when a peer moves to wireguard', () => {
    const lease = (n: number, types: string[]): Lease => ({
      key: `10.244.${n}.0-24`, subnet: IPNet.parse(`10.244.${n}.0/24`),
      attrs: { publicIP: `198.18.0.${n}`, publicIPv6: null, backendType: types[0], backendData: {}, backends: types.map((type) => ({ type, data: {} })) },
      modRevision: 1n,
    } as Lease);
    const own = lease(1, ['wireguard', 'vxlan']);
    const carrier = (sessions: string[], running = ['wireguard', 'vxlan'], peerTypes = ['wireguard', 'vxlan']) => {
      const a = assignPeers({
        order: ['wireguard'], running, own, leases: [own, lease(2, peerTypes)], reach: () => true, whyNotReached: () => '',
        established: (key, subnet) => key !== 'wireguard' || sessions.includes(subnet),
      });
      return [...a.carried].filter(([, peers]) => peers.length > 0).map(([key]) => key);
    };

    it('stays on the backend both nodes share until its handshake with wireguard-go completed (make before break)', () => {
      expect(carrier([])).to.deep.equal(['vxlan']);
      expect(carrier(['10.244.2.0/24'])).to.deep.equal(['wireguard']);
    });

    it('goes to wireguard at once when nothing else is shared: its own traffic starts the handshake', () => {
      expect(carrier([], ['wireguard'], ['wireguard'])).to.deep.equal(['wireguard']);
      expect(carrier([], ['wireguard', 'vxlan'], ['wireguard'])).to.deep.equal(['wireguard']);
    });
  });

  describe('dual stack (EnableIPv6), as flanneld', () => {
    const NO_KERNEL = new Proxy({}, { get: () => () => { throw new Error('a planner called netlink'); } }) as unknown as Netlink;
    const QUIET = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
    const local: LocalNode = { extIface: { name: 'eth0', index: 2, mtu: 1500, ipv4: '198.18.0.1' }, publicIP: '198.18.0.1', publicIPv6: 'fd00:198:18::1' };
    const wg = { name: 'flannel-wg', index: 11, mtu: 1420, up: true } as LinkInfo;
    const wg6 = { name: 'flannel-wg-v6', index: 12, mtu: 1420, up: true } as LinkInfo;
    const key = (n: number) => Buffer.alloc(32, n).toString('base64');
    const key6 = (n: number) => Buffer.alloc(32, 100 + n).toString('base64');
    const lease = (n: number, attrs: Partial<LeaseAttrs> = {}, v6 = true): Lease => ({
      key: v6 ? `10.244.${n}.0-24&fd00:10:244:${n}::-64` : `10.244.${n}.0-24`,
      subnet: IPNet.parse(`10.244.${n}.0/24`),
      ...(v6 ? { ipv6Subnet: IPNet.parse(`fd00:10:244:${n}::/64`) } : {}),
      modRevision: 1n,
      attrs: {
        publicIP: `198.18.0.${n}`, publicIPv6: v6 ? `fd00:198:18::${n}` : null, backendType: 'wireguard',
        backendData: { PublicKey: key(n) }, ...(v6 ? { backendV6Data: { PublicKey: key6(n) } } : {}), ...attrs,
      },
    });
    const own = lease(1);
    const plan = (settings: Record<string, unknown>, peers: Lease[], ipv6Device: LinkInfo | null = wg6) => {
      const backend = backendFactory('wireguard').create({ type: 'wireguard', settings }, { log: QUIET, netlink: NO_KERNEL });
      const a = assignPeers({ order: ['wireguard'], running: ['wireguard'], own, leases: peers, reach: () => false, whyNotReached: () => '' });
      return backend.desired({ local, own, device: wg, ipv6Device: ipv6Device ?? undefined, reach: () => false, siblings: 0 }, assignedTo(a, 'wireguard', new Map()));
    };
    const routes = (s: ReturnType<typeof plan>) => s.routes.map((r) => `${r.dst} dev ${r.dev}`);

    it('publishes BackendV6Data {"PublicKey": ...} beside BackendData, byte for byte as flanneld', () => {
      const attrs = { publicIP: '198.18.0.1', publicIPv6: 'fd00:198:18::1', backendType: 'wireguard', backendData: { PublicKey: ALICE_PUBLIC }, backendV6Data: { PublicKey: ALICE_PUBLIC } };
      const text = encodeLeaseAttrs(attrs);
      expect(text).to.equal(`{"PublicIP":"198.18.0.1","PublicIPv6":"fd00:198:18::1","BackendType":"wireguard","BackendData":{"PublicKey":"${ALICE_PUBLIC}"},"BackendV6Data":{"PublicKey":"${ALICE_PUBLIC}"}}`);
      expect(peerPublicKey(decodeLeaseAttrs(text).backendV6Data)).to.deep.equal({ key: ALICE_PUBLIC });
    });

    it('Mode separate: IPv6 subnets on flannel-wg-v6, its peers at [PublicIPv6]:ListenPortV6 with the BackendV6Data key, its /128', () => {
      const state = plan({}, [lease(2), lease(3)]);
      expect(routes(state)).to.deep.equal([
        '10.244.2.0/24 dev flannel-wg', '10.244.3.0/24 dev flannel-wg',
        'fd00:10:244:2::/64 dev flannel-wg-v6', 'fd00:10:244:3::/64 dev flannel-wg-v6',
      ]);
      expect(state.devices).to.deep.equal([
        { name: 'flannel-wg', ifindex: 11, addresses: ['10.244.1.0/32'] },
        { name: 'flannel-wg-v6', ifindex: 12, family: 6, addresses: ['fd00:10:244:1::/128'] },
      ]);
      expect(state.engine).to.deep.equal([
        { subnet: '10.244.2.0/24', publicIP: '198.18.0.2', port: 51820, publicKey: key(2) },
        { subnet: '10.244.3.0/24', publicIP: '198.18.0.3', port: 51820, publicKey: key(3) },
        { subnet: 'fd00:10:244:2::/64', publicIP: 'fd00:198:18::2', port: 51821, publicKey: key6(2), device: 'flannel-wg-v6', peerSubnet: '10.244.2.0/24' },
        { subnet: 'fd00:10:244:3::/64', publicIP: 'fd00:198:18::3', port: 51821, publicKey: key6(3), device: 'flannel-wg-v6', peerSubnet: '10.244.3.0/24' },
      ]);
      expect(plan({ ListenPortV6: 52000 }, [lease(2)]).engine![1]).to.include({ port: 52000 });
      expect(state.skipped).to.deep.equal([]);
    });

    it('Mode separate: carries an IPv4-only peer over flannel-wg alone, and skips the IPv6 subnet of a peer without BackendV6Data or PublicIPv6, saying why', () => {
      const state = plan({}, [lease(2, {}, false), lease(3, { backendV6Data: undefined }), lease(4, { publicIPv6: null })]);
      expect(routes(state)).to.deep.equal(['10.244.2.0/24 dev flannel-wg', '10.244.3.0/24 dev flannel-wg', '10.244.4.0/24 dev flannel-wg']);
      expect(state.skipped).to.deep.equal([
        'peer 10.244.3.0/24 has the IPv6 subnet fd00:10:244:3::/64 but its lease has no BackendV6Data.PublicKey; its IPv6 subnet is not routed over wireguard',
        'peer 10.244.4.0/24 has the IPv6 subnet fd00:10:244:4::/64 but its lease has no PublicIPv6; its IPv6 subnet is not routed over wireguard',
      ]);
    });

    it('Mode separate: leaves the IPv6 routes alone when the plan is read without flannel-wg-v6', () => {
      const state = plan({}, [lease(2)], null);
      expect(routes(state)).to.deep.equal(['10.244.2.0/24 dev flannel-wg']);
      expect(state.keepRoutes).to.include('fd00:10:244:2::/64');
    });

    it('Mode ipv4, ipv6 and auto: one device, flannel-wg, holding both addresses; one peer per node with both subnets and the BackendV6Data key', () => {
      for (const [mode, endpoint] of [['ipv4', '198.18.0.2'], ['ipv6', 'fd00:198:18::2'], ['auto', '198.18.0.2']]) {
        const state = plan({ Mode: mode }, [lease(2)]);
        expect(routes(state), mode).to.deep.equal(['10.244.2.0/24 dev flannel-wg', 'fd00:10:244:2::/64 dev flannel-wg']);
        expect(state.devices, mode).to.deep.equal([{ name: 'flannel-wg', ifindex: 11, family: 'dual', addresses: ['10.244.1.0/32', 'fd00:10:244:1::/128'] }]);
        expect(state.engine, mode).to.deep.equal([
          { subnet: '10.244.2.0/24', publicIP: endpoint, port: 51820, publicKey: key6(2), allowedIPs: ['10.244.2.0/24', 'fd00:10:244:2::/64'] },
        ]);
      }
    });

    it('Mode ipv6 skips a peer that publishes no PublicIPv6, saying why; ipv4 and auto reach it over IPv4', () => {
      const peer = lease(2, { publicIPv6: null });
      const state = plan({ Mode: 'ipv6' }, [peer]);
      expect(state.routes).to.deep.equal([]);
      expect(state.skipped[0]).to.include('peer 10.244.2.0/24 (198.18.0.2): its lease has no PublicIPv6, and Backend.Mode "ipv6"');
      expect(plan({ Mode: 'auto' }, [peer]).engine![0]).to.include({ publicIP: '198.18.0.2' });
    });

    it('gives wireguard-go IPv6 endpoints in brackets, in the form it prints them back', () => {
      expect(formatEndpoint('fd00:198:18:0::2', 51821)).to.equal('[fd00:198:18::2]:51821');
      expect(formatEndpoint('198.18.0.2', 51820)).to.equal('198.18.0.2:51820');
    });

    it("chooses Mode auto's endpoint as flanneld: public IPv4 first, then a public IPv6 when both ends have one, else IPv4", () => {
      expect(autoEndpoint('203.0.113.2', '2001:db8::2', '203.0.113.1', '2001:db8::1')).to.equal('203.0.113.2');
      expect(autoEndpoint('10.0.0.2', '2001:db8::2', '10.0.0.1', '2001:db8::1')).to.equal('2001:db8::2');
      expect(autoEndpoint('10.0.0.2', 'fd00::2', '10.0.0.1', 'fd00::1')).to.equal('10.0.0.2');
      expect(autoEndpoint('10.0.0.2', '2001:db8::2', '10.0.0.1', 'fd00::1')).to.equal('10.0.0.2');
      expect(autoEndpoint(undefined, 'fd00::2', '10.0.0.1', 'fd00::1')).to.equal('fd00::2');
      expect([isPrivateAddress('172.16.0.1'), isPrivateAddress('172.32.0.1'), isPrivateAddress('192.168.1.1'), isPrivateAddress('fc00::1'), isPrivateAddress('fe80::1')])
        .to.deep.equal([true, false, true, true, false]);
    });

    it('on an IPv4-only node, plans flannel-wg alone whatever the Mode (but ipv6)', () => {
      const backend = backendFactory('wireguard').create({ type: 'wireguard', settings: {} }, { log: QUIET, netlink: NO_KERNEL });
      const ownV4 = lease(1, {}, false);
      const a = assignPeers({ order: ['wireguard'], running: ['wireguard'], own: ownV4, leases: [lease(2)], reach: () => false, whyNotReached: () => '' });
      const state = backend.desired({ local: { ...local, publicIPv6: undefined }, own: ownV4, device: wg, ipv6Device: undefined, reach: () => false, siblings: 0 }, assignedTo(a, 'wireguard', new Map()));
      expect(routes(state)).to.deep.equal(['10.244.2.0/24 dev flannel-wg']);
      expect(state.engine).to.deep.equal([{ subnet: '10.244.2.0/24', publicIP: '198.18.0.2', port: 51820, publicKey: key(2) }]);
    });
  
    it('refuses to change Mode or ListenPortV6 in place where the node carries IPv6, saying to restart twilld; takes them on an IPv4-only node', () => {
      const running = (settings: Record<string, unknown>, layout: string, node: LocalNode = local) => {
        const b = backendFactory('wireguard').create({ type: 'wireguard', settings }, { log: QUIET, netlink: NO_KERNEL });
        Object.assign(b, { layout, local: node });
        return b;
      };
      const refusal = (b: ReturnType<typeof running>, settings: Record<string, unknown>) => b.inPlaceRefusal!({ type: 'wireguard', settings });
      expect(refusal(running({}, 'separate'), { Mode: 'auto' })).to.include('cannot take Backend.Mode "auto" (this node runs "separate") live').and.to.include('restart twilld');
      expect(refusal(running({}, 'separate'), { ListenPortV6: 52000 })).to.include('Backend.ListenPortV6 52000 (flannel-wg-v6 listens on 51821)');
      expect(refusal(running({ Mode: 'ipv4' }, 'shared'), { Mode: 'ipv6' })).to.include('Backend.Mode "ipv6"');
      expect(refusal(running({}, 'separate'), { PSK: ALICE_PUBLIC })).to.equal(undefined);
      const v4only = { ...local, publicIPv6: undefined };
      expect(refusal(running({}, 'none', v4only), { Mode: 'auto', ListenPortV6: 52000 })).to.equal(undefined);
      expect(refusal(running({}, 'none', v4only), { Mode: 'ipv6' })).to.include('needs an IPv6 public address');
    });

    describe('make before break on both devices (Mode separate)', () => {
      /** A wireguard-go stand-in: holds what it is told; `handshaken` keys have completed a handshake; `broken` refuses every request. */
      class FakeEngine {
        peers: DevicePeer[] = [];
        handshaken = new Set<string>();
        broken = false;
        async state(): Promise<DeviceState> {
          if (this.broken) throw new Error('wireguard-go does not answer');
          return { listenPort: 1, peers: this.peers.map((p) => ({ ...p, lastHandshakeSec: this.handshaken.has(p.publicKey) ? 1 : 0 })) };
        }
        async configure(lines: readonly string[]): Promise<void> {
          if (this.broken) throw new Error('wireguard-go does not answer');
          let cur: DevicePeer | undefined;
          for (const l of lines) {
            const [k, v] = l.split('=');
            if (k === 'public_key') {
              cur = this.peers.find((p) => p.publicKey === v);
              if (!cur) this.peers.push(cur = { publicKey: v, presharedKey: '0'.repeat(64), allowedIPs: [], keepalive: 0, lastHandshakeSec: 0, rxBytes: 0, txBytes: 0 });
            } else if (k === 'allowed_ip' && cur) (cur.allowedIPs as string[]).push(v);
          }
        }
        detach(): void {}
      }
      const setup = () => {
        const backend = backendFactory('wireguard').create({ type: 'wireguard', settings: {} }, { log: QUIET, netlink: NO_KERNEL });
        const v4 = new FakeEngine();
        const v6 = new FakeEngine();
        Object.assign(backend, { engine: v4, v6Engine: v6, keys: generateKeyPair(), layout: 'separate', local });
        const table = plan({}, [lease(2)]).engine!;
        return { backend, v4, v6, table };
      };

      it('counts a peer as established only once flannel-wg and flannel-wg-v6 both completed a handshake with it', async () => {
        const { backend, v4, v6, table } = setup();
        await backend.setEnginePeers!(table);
        expect(v6.peers.map((p) => p.allowedIPs)).to.deep.equal([['fd00:10:244:2::/64']]);
        v4.handshaken.add(keyToHex(key(2)));
        expect([...await backend.establishedPeers!()]).to.deep.equal([]);
        v6.handshaken.add(keyToHex(key6(2)));
        expect([...await backend.establishedPeers!()]).to.deep.equal(['10.244.2.0/24']);
      });

      it('does not count it when flannel-wg-v6 could not be told about the peer, whatever flannel-wg says', async () => {
        const { backend, v4, v6, table } = setup();
        v6.broken = true;
        await backend.setEnginePeers!(table).catch(() => undefined);
        v4.handshaken.add(keyToHex(key(2)));
        v6.broken = false;
        expect([...await backend.establishedPeers!()]).to.deep.equal([]);
      });
    });
});
});
