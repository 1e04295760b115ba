/**
 * The wireguard backend's engine, as `twill diagnose` sees it: wireguard-go
 * answers on this node's UAPI socket (the one twilld uses), holds a peer for
 * every node whose lease terminates wireguard, and has a recent handshake
 * with each. A handshake older than WireGuard's rekey time plus slack
 * (REJECT_AFTER_TIME, 180 s) while the peer is carried means the two do not
 * reach each other on the ListenPort. In dual stack with Mode separate,
 * `flannel-wg-v6`'s wireguard-go is checked the same way, by each peer's
 * BackendV6Data key and IPv6 subnet.
 */
import type { Lease } from '../subnet';
import { existsSync } from 'fs';
import { peerPublicKey, socketPathFor, WIREGUARD_DEVICE, WIREGUARD_V6_DEVICE } from '../../backends/wireguard';
import { keyToHex } from '../../backends/wireguard/keys';
import { getDevice, type DeviceState } from '../../backends/wireguard/uapi';
import { terminatedBy, backendDataOf, backendV6DataOf, unusablePeer } from '../../backends/assignment';
import { typeOfKey } from '../../backends/instance';
import { Findings, TWILLD_REPAIRS } from './findings';

/** WireGuard rejects a session older than this (seconds): with traffic a new handshake comes every 2 minutes. */
const STALE_HANDSHAKE_S = 180;

export async function checkWireguard(own: Lease, leases: readonly Lease[], out: Findings, nowSec = Date.now() / 1000): Promise<void> {
  await checkDevice(WIREGUARD_DEVICE, own, leases, out, nowSec);
  // Dual stack, Mode separate: flannel-wg-v6 has a wireguard-go of its own (its socket is there only then).
  if (own.ipv6Subnet && existsSync(socketPathFor(WIREGUARD_V6_DEVICE))) await checkDevice(WIREGUARD_V6_DEVICE, own, leases, out, nowSec);
}

/** One device's wireguard-go: it answers, holds each wireguard peer (by that device's key), and had a recent handshake with it. */
async function checkDevice(device: string, own: Lease, leases: readonly Lease[], out: Findings, nowSec: number): Promise<void> {
  const v6 = device === WIREGUARD_V6_DEVICE;
  const socket = socketPathFor(device);
  let dev: DeviceState;
  try {
    dev = await getDevice(socket);
  } catch (err) {
    out.fail('device', `${v6 ? `${device}: ` : ''}wireguard-go does not answer: ${(err as Error).message}`, TWILLD_REPAIRS);
    return;
  }
  out.ok('device', `wireguard-go answers on ${socket}: listen port ${dev.listenPort}, ${dev.peers.length} peer(s)`);
  const held = new Map(dev.peers.map((p) => [p.publicKey, p]));
  for (const lease of leases) {
    if (lease.key === own.key || unusablePeer(lease, own)) continue;
    if (v6 && !lease.ipv6Subnet) continue; // an IPv4-only node has no peer on flannel-wg-v6
    const key = terminatedBy(lease.attrs).find((k) => typeOfKey(k) === 'wireguard');
    if (!key) continue;
    const label = v6 ? `${lease.ipv6Subnet!.toString()} (${lease.attrs.publicIPv6 ?? 'no PublicIPv6'}), ${device}` : `${lease.subnet.toString()} (${lease.attrs.publicIP}), wireguard`;
    const remote = v6 ? lease.attrs.publicIPv6 ?? lease.attrs.publicIP : lease.attrs.publicIP;
    const pub = v6 ? peerPublicKey(backendV6DataOf(lease.attrs, key)) : peerPublicKey(backendDataOf(lease.attrs, key));
    if (!('key' in pub)) {
      out.warn('peer', `${label}: ${v6 ? pub.problem.replace('BackendData', 'BackendV6Data') : pub.problem}; twilld skips it`, 'fix the BackendData of that node\'s lease (restart twilld there: it republishes its key)');
      continue;
    }
    const peer = held.get(keyToHex(pub.key));
    if (!peer) {
      out.fail('peer', `${label}: not in wireguard-go's peers`, TWILLD_REPAIRS);
      continue;
    }
    const traffic = `received ${peer.rxBytes} B, sent ${peer.txBytes} B`;
    if (peer.lastHandshakeSec === 0) {
      out.warn('peer', `${label}: no handshake yet (${traffic})`,
        `normal until traffic flows to it; otherwise check that UDP ${dev.listenPort} passes between this node and ${remote}, and that its twilld runs`);
      continue;
    }
    const age = Math.max(0, Math.round(nowSec - peer.lastHandshakeSec));
    if (age > STALE_HANDSHAKE_S) {
      out.warn('peer', `${label}: last handshake ${age} s ago (${traffic})`,
        `check that UDP ${dev.listenPort} passes between this node and ${remote}, and that its twilld runs`);
    } else {
      out.ok('peer', `${label}: handshake ${age} s ago, endpoint ${peer.endpoint ?? '-'}, ${traffic}`);
    }
  }
}
