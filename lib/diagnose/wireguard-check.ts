/**
 * The wireguard backend's engine, as `twill diagnose` sees it: wireguard-go
 * answers on this node's UAPI socket (the one twilld uses), holds a peer for
 * every node whose lease terminates wireguard, and has a recent handshake
 * with each. A handshake older than WireGuard's rekey time plus slack
 * (REJECT_AFTER_TIME, 180 s) while the peer is carried means the two do not
 * reach each other on the ListenPort.
 */
import type { Lease } from '../subnet';
import { peerPublicKey, socketPathFor, WIREGUARD_DEVICE } from '../../backends/wireguard';
import { keyToHex } from '../../backends/wireguard/keys';
import { getDevice, type DeviceState } from '../../backends/wireguard/uapi';
import { terminatedBy, backendDataOf, unusablePeer } from '../../backends/assignment';
import { typeOfKey } from '../../backends/instance';
import { Findings, TWILLD_REPAIRS } from './findings';

/** WireGuard rejects a session older than this (seconds): with traffic a new handshake comes every 2 minutes. */
const STALE_HANDSHAKE_S = 180;

export async function checkWireguard(own: Lease, leases: readonly Lease[], out: Findings, nowSec = Date.now() / 1000): Promise<void> {
  const socket = socketPathFor(WIREGUARD_DEVICE);
  let dev: DeviceState;
  try {
    dev = await getDevice(socket);
  } catch (err) {
    out.fail('device', `wireguard-go does not answer: ${(err as Error).message}`, TWILLD_REPAIRS);
    return;
  }
  out.ok('device', `wireguard-go answers on ${socket}: listen port ${dev.listenPort}, ${dev.peers.length} peer(s)`);
  const held = new Map(dev.peers.map((p) => [p.publicKey, p]));
  for (const lease of leases) {
    if (lease.key === own.key || unusablePeer(lease, own)) continue;
    const key = terminatedBy(lease.attrs).find((k) => typeOfKey(k) === 'wireguard');
    if (!key) continue;
    const label = `${lease.subnet.toString()} (${lease.attrs.publicIP})`;
    const pub = peerPublicKey(backendDataOf(lease.attrs, key));
    if (!('key' in pub)) {
      out.warn('peer', `${label}, wireguard: ${pub.problem}; twilld skips it`, 'fix the BackendData of that node\'s lease (restart twilld there: it republishes its key)');
      continue;
    }
    const peer = held.get(keyToHex(pub.key));
    if (!peer) {
      out.fail('peer', `${label}, wireguard: not in wireguard-go's peers`, TWILLD_REPAIRS);
      continue;
    }
    const traffic = `received ${peer.rxBytes} B, sent ${peer.txBytes} B`;
    if (peer.lastHandshakeSec === 0) {
      out.warn('peer', `${label}, wireguard: no handshake yet (${traffic})`,
        `normal until traffic flows to it; otherwise check that UDP ${dev.listenPort} passes between this node and ${lease.attrs.publicIP}, and that its twilld runs`);
      continue;
    }
    const age = Math.max(0, Math.round(nowSec - peer.lastHandshakeSec));
    if (age > STALE_HANDSHAKE_S) {
      out.warn('peer', `${label}, wireguard: last handshake ${age} s ago (${traffic})`,
        `check that UDP ${dev.listenPort} passes between this node and ${lease.attrs.publicIP}, and that its twilld runs`);
    } else {
      out.ok('peer', `${label}, wireguard: handshake ${age} s ago, endpoint ${peer.endpoint ?? '-'}, ${traffic}`);
    }
  }
}
