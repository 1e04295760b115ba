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
import type { DeviceState } from '../../backends/wireguard/uapi';
import { assignPeers } from '../../backends';
import { IPNet } from '../../lib/ip';
import type { Lease } from '../../lib/subnet';

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

    it('has flanneld\'s defaults: ListenPort 51820, no PSK, keepalive off, Mode separate', () => {
      expect(wireguardSettings(cfg({}))).to.deep.equal({ listenPort: 51820, keepalive: 0, mode: 'separate' });
    });

    it('reads the keys case-insensitively, as flanneld', () => {
      expect(wireguardSettings(cfg({ listenport: 51900, psk: ALICE_PUBLIC, persistentkeepaliveinterval: 25, mode: 'Auto' })))
        .to.deep.equal({ listenPort: 51900, psk: ALICE_PUBLIC, keepalive: 25, mode: 'auto' });
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
});
