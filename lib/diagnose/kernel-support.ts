/**
 * Which datapaths this kernel can carry: vxlan and ipip are tried for real
 * (a temporary `twdiag<hex>` link is created, left down, and deleted at
 * once), tun by opening `/dev/net/tun`.
 *
 * A missing capability is a FAIL when the running backend needs it and a
 * WARN otherwise (the node works today, but could not switch backend).
 * The temporary link is deleted even when the check fails half-way; if the
 * delete itself fails, the finding names the link so it can be removed by
 * hand.
 */
import { randomBytes } from 'crypto';
import { closeSync, openSync } from 'fs';
import { isUnsupportedLinkKind, Netlink } from '../netlink';
import { Findings } from './findings';

const TOPIC = 'kernel';

export async function checkKernelSupport(nl: Netlink, runningBackend: string | undefined, out: Findings): Promise<void> {
  await checkLinkKind(nl, 'vxlan', runningBackend === 'vxlan', out, (name) =>
    nl.createVxlan({ name, vni: probeVni(), port: 8472, learning: false, gbp: false }));
  checkTun(runningBackend === 'udp' || runningBackend === 'wireguard' ? runningBackend : undefined, out);
  await checkLinkKind(nl, 'ipip', runningBackend === 'ipip', out, (name) => nl.createIpip({ name }));
  if (runningBackend === 'wireguard') await checkKernelWireguard(nl, out);
}

/** Either way twill runs wireguard-go (kernel WireGuard is configured over generic netlink, which twill does not speak): this only says which. */
async function checkKernelWireguard(nl: Netlink, out: Findings): Promise<void> {
  const name = `twdiag${randomBytes(3).toString('hex')}`;
  try {
    await nl.createWireguard(name);
  } catch (err) {
    if (isUnsupportedLinkKind(err)) out.ok(TOPIC, 'no WireGuard in this kernel: the wireguard backend runs wireguard-go (userspace)');
    else out.warn(TOPIC, `cannot tell whether this kernel has WireGuard: ${(err as Error).message}`, 'run twill diagnose as root');
    return;
  }
  await nl.deleteLink(name).catch(() => undefined);
  out.ok(TOPIC, 'this kernel has WireGuard; twill still runs wireguard-go (it does not configure kernel WireGuard)');
}

async function checkLinkKind(
  nl: Netlink,
  kind: string,
  needed: boolean,
  out: Findings,
  create: (name: string) => Promise<unknown>,
): Promise<void> {
  const name = `twdiag${randomBytes(3).toString('hex')}`;
  let created = false;
  try {
    await create(name);
    created = true;
    out.ok(TOPIC, `${kind} links can be created`);
  } catch (err) {
    const missing = isUnsupportedLinkKind(err);
    const what = missing
      ? `no ${kind} support (the "${kind}" link type is unknown: the module is missing or cannot be loaded)`
      : `cannot create a ${kind} link: ${(err as Error).message}`;
    const advice = missing ? ADVICE_MISSING[kind] : 'run twill diagnose as root (it needs CAP_NET_ADMIN to try a temporary link)';
    if (needed) out.fail(TOPIC, `${what}; the running backend is ${kind}`, advice);
    else out.warn(TOPIC, what, advice);
  } finally {
    if (created) {
      try {
        await nl.deleteLink(name);
      } catch (err) {
        out.warn(TOPIC, `could not delete the temporary link ${name}: ${(err as Error).message}`, `delete it by hand: ip link del ${name}`);
      }
    }
  }
}

/**
 * A VNI no cluster uses (the kernel refuses a second device with the same VNI
 * and port, even a down one): one of the top 256 of the 24-bit space.
 */
function probeVni(): number {
  return 0xffff00 + randomBytes(1)[0];
}

const ADVICE_MISSING: Readonly<Record<string, string>> = {
  vxlan: 'load it with `modprobe vxlan` (kernel config CONFIG_VXLAN); without it use the host-gw backend (nodes on one link) or udp',
  ipip: 'load it with `modprobe ipip` if the kernel has it; otherwise use Backend.Mode "userspace" (the userspace ipip datapath) or the vxlan backend',
};

/** `neededBy`: the running backend when it needs a TUN device. */
function checkTun(neededBy: string | undefined, out: Findings): void {
  let fd: number | undefined;
  try {
    fd = openSync('/dev/net/tun', 'r+');
    out.ok(TOPIC, '/dev/net/tun exists and opens (tun devices for the udp backend, userspace ipip and wireguard-go)');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    const what = `/dev/net/tun cannot be opened (${code})`;
    const advice = code === 'ENOENT'
      ? 'load the tun module (`modprobe tun`) or create the node (`mkdir -p /dev/net && mknod /dev/net/tun c 10 200`); in a container, pass /dev/net/tun through'
      : 'run twill diagnose as root; in a container, allow the tun device (device cgroup c 10:200)';
    if (neededBy) out.fail(TOPIC, `${what}; the running backend is ${neededBy}`, advice);
    else out.warn(TOPIC, what, advice);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
