/**
 * The lab's network: an underlay bridge in the root namespace holding
 * 198.19.0.254/24 (etcd listens there), one namespace per node with `eth0`
 * at 198.19.0.<n+1>, and one pod namespace per node behind the node's
 * `cni0` bridge on the node's leased subnet. Everything is named with the
 * `twlab<id>` prefix so `lab down` can find it even without the state file.
 * (198.19.0.0/24 keeps the lab apart from the test suite's 198.18.0.0/24.)
 */
import { ip, inNs, run } from './run';

export const PREFIX = 'twlab';
export const UNDERLAY_NET = '198.19.0';
export const BRIDGE_IP = `${UNDERLAY_NET}.254`;

export const names = (id: string) => ({
  bridge: `${PREFIX}${id}br`,
  node: (n: number) => `${PREFIX}${id}-n${n}`,
  pod: (n: number) => `${PREFIX}${id}-p${n}`,
  rootVeth: (n: number) => `${PREFIX}${id}n${n}`,
});

export function nodeIp(n: number): string {
  return `${UNDERLAY_NET}.${n + 1}`;
}

export async function createUnderlay(id: string): Promise<void> {
  const N = names(id);
  await ip(['link', 'add', N.bridge, 'type', 'bridge']);
  await ip(['addr', 'add', `${BRIDGE_IP}/24`, 'dev', N.bridge]);
  await ip(['link', 'set', N.bridge, 'up']);
}

export async function createNode(id: string, n: number): Promise<void> {
  const N = names(id);
  const ns = N.node(n);
  await ip(['netns', 'add', ns]);
  await ip(['link', 'set', 'lo', 'up'], ns);
  await ip(['link', 'add', N.rootVeth(n), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await ip(['link', 'set', N.rootVeth(n), 'master', N.bridge, 'up']);
  await ip(['addr', 'add', `${nodeIp(n)}/24`, 'dev', 'eth0'], ns);
  await ip(['link', 'set', 'eth0', 'up'], ns);
  // A default route to a gateway nobody answers for: the default-route
  // interface is eth0, and nothing can leave the lab.
  await ip(['route', 'add', 'default', 'via', `${UNDERLAY_NET}.253`, 'dev', 'eth0'], ns);
  await inNs(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
}

/** A pod namespace behind cni0 holding the subnet's .2, cni0 holding .1. */
export async function createPod(id: string, n: number, subnet: string, mtu: number): Promise<string> {
  const N = names(id);
  const [base, len] = subnet.split('/');
  const parts = base.split('.').map(Number);
  const gw = `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3] + 1}`;
  const podIp = `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3] + 2}`;
  const node = N.node(n);
  const pod = N.pod(n);
  await ip(['netns', 'add', pod]);
  await ip(['link', 'set', 'lo', 'up'], pod);
  await ip(['link', 'add', 'cni0', 'type', 'bridge'], node);
  await ip(['addr', 'add', `${gw}/${len}`, 'dev', 'cni0'], node);
  await ip(['link', 'set', 'cni0', 'up'], node);
  await ip(['link', 'add', 'vethpod', 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(mtu), 'netns', pod], node);
  await ip(['link', 'set', 'vethpod', 'master', 'cni0', 'up'], node);
  await ip(['addr', 'add', `${podIp}/${len}`, 'dev', 'eth0'], pod);
  await ip(['link', 'set', 'eth0', 'up'], pod);
  await ip(['route', 'add', 'default', 'via', gw, 'dev', 'eth0'], pod);
  return podIp;
}

/** Every lab namespace and root-namespace link there is (of any lab id). */
export async function findLabObjects(): Promise<{ namespaces: string[]; links: string[] }> {
  const nsText = await run(['ip', 'netns', 'list']).catch(() => '');
  const namespaces = nsText.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(PREFIX));
  const linkText = await run(['ip', '-o', 'link', 'show']).catch(() => '');
  const links = linkText.split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(PREFIX));
  return { namespaces, links };
}

/** Kills every process left in the lab's namespaces (by PID) and removes the namespaces and links. */
export async function removeLabObjects(): Promise<void> {
  const { namespaces, links } = await findLabObjects();
  for (const ns of namespaces) {
    const pids = (await run(['ip', 'netns', 'pids', ns]).catch(() => '')).split('\n').map(Number).filter((p) => p > 0);
    for (const pid of pids) killQuietly(pid, 'SIGKILL');
  }
  for (const l of links) await ip(['link', 'del', l]).catch(() => undefined);
  for (const ns of namespaces.sort((a, b) => Number(b.includes('-p')) - Number(a.includes('-p')))) {
    await ip(['netns', 'del', ns]).catch(() => undefined);
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
