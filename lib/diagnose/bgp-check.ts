/**
 * The bgp backend as `twill diagnose` sees it: BIRD answers on this node's
 * control socket (the one twilld uses), each of its BGP sessions is
 * established, and BIRD's route to every peer whose lease terminates bgp is
 * in the kernel. A peer without one is carried by the Fallback (or the
 * backend it came from), or by nothing: that is a FAIL.
 */
import type { Lease } from '../subnet';
import type { Netlink } from '../netlink';
import { birdSessions } from '../../backends/bgp/bird-control';
import { birdSocketPathFor } from '../../backends/bgp/bird-engine';
import { RTPROT_BIRD } from '../../backends/bgp';
import { terminatedBy, unusablePeer } from '../../backends/assignment';
import { typeOfKey } from '../../backends/instance';
import { bgpStateOf, isEstablished } from '../observe/metrics';
import { Findings, TWILLD_REPAIRS } from './findings';
import type { PlannedPath } from './plan-check';

const TOPIC = 'peer';

export async function checkBgp(nl: Netlink, own: Lease, leases: readonly Lease[], paths: ReadonlyMap<string, PlannedPath>, out: Findings): Promise<void> {
  const socket = birdSocketPathFor();
  try {
    const sessions = await birdSessions(socket);
    out.ok('device', `BIRD answers on ${socket}: ${sessions.filter(isEstablished).length} of ${sessions.length} BGP session(s) established`);
    for (const s of sessions) {
      const who = `BGP session ${s.name}${s.neighbor ? ` with ${s.neighbor}${s.neighborAs ? ` (AS ${s.neighborAs})` : ''}` : ''}`;
      if (isEstablished(s)) out.ok(TOPIC, `${who}: Established, ${s.routesImported ?? 0} route(s) learned`);
      else out.warn(TOPIC, `${who}: ${bgpStateOf(s)}${s.lastError ? ` (${s.lastError})` : s.info.trim() !== bgpStateOf(s) ? ` (${s.info.trim()})` : ''}`, sessionAdvice(s));
    }
  } catch (err) {
    out.fail('device', `BIRD does not answer on ${socket}: ${(err as Error).message}`, TWILLD_REPAIRS);
  }
  const learned = new Map((await nl.listRoutes({ family: 4, protocol: RTPROT_BIRD })).map((r) => [r.dst, r]));
  for (const lease of leases) {
    if (lease.key === own.key || unusablePeer(lease, own)) continue;
    if (!terminatedBy(lease.attrs).some((k) => typeOfKey(k) === 'bgp')) continue;
    const label = `${lease.subnet.toString()} (${lease.attrs.publicIP})`;
    const route = learned.get(lease.subnet.toString());
    const path = paths.get(lease.key);
    if (route) {
      out.ok(TOPIC, `${label}, bgp: BIRD's route via ${route.gateway ?? route.dev ?? '?'} is in the kernel`);
    } else if (path) {
      out.warn(TOPIC, `${label}, bgp: BIRD has no route to it; ${path.type} carries it meanwhile`, 'see its BGP session above; it moves back to bgp once BIRD learns the route');
    } else {
      out.fail(TOPIC, `${label}, bgp: BIRD has no route to it and no other backend carries it`,
        'see its BGP session above, and give bgp a Fallback (e.g. "Fallback": "vxlan") so that such peers are carried meanwhile');
    }
  }
}

export function sessionAdvice(s: { readonly info: string; readonly lastError?: string }): string {
  // BIRD says "Kernel does not support TCP MD5 signatures" when setsockopt(TCP_MD5SIG) is refused.
  if (/MD5/i.test(`${s.info} ${s.lastError ?? ''}`)) {
    return 'this kernel cannot sign BGP\'s TCP with MD5 (it lacks CONFIG_TCP_MD5SIG): remove Backend.Password (and the peers\' Password), or run a kernel that has it';
  }
  return 'check that TCP 179 passes between the two, that both run BIRD (twilld starts it), and that the AS numbers and passwords match';
}
