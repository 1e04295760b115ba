/**
 * The subnet file (`/run/flannel/subnet.env`) that CNI plugins read.
 * Written atomically — a temp file in the same directory, fsync, rename —
 * so a reader never sees half a file; mode 0644 because CNI plugins run as
 * other users in some setups.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { IPNet } from '../ip';

export interface SubnetFileContents {
  readonly network?: IPNet;
  /** The node's subnet; the file carries its first address, e.g. 10.244.1.1/24. */
  readonly subnet?: IPNet;
  readonly ipv6Network?: IPNet;
  readonly ipv6Subnet?: IPNet;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

export function formatSubnetFile(c: SubnetFileContents): string {
  const lines: string[] = [];
  if (c.network && c.subnet) {
    lines.push(`FLANNEL_NETWORK=${c.network.toString()}`);
    lines.push(`FLANNEL_SUBNET=${c.subnet.ip.add(1).toString()}/${c.subnet.prefixLen}`);
  }
  if (c.ipv6Network && c.ipv6Subnet) {
    lines.push(`FLANNEL_IPV6_NETWORK=${c.ipv6Network.toString()}`);
    lines.push(`FLANNEL_IPV6_SUBNET=${c.ipv6Subnet.ip.add(1).toString()}/${c.ipv6Subnet.prefixLen}`);
  }
  lines.push(`FLANNEL_MTU=${c.mtu}`);
  lines.push(`FLANNEL_IPMASQ=${c.ipMasq}`);
  return lines.join('\n') + '\n';
}

/** Numbers the temp files of this process, so that concurrent writes never share one. */
let tmpSerial = 0;

export async function writeSubnetFile(file: string, c: SubnetFileContents): Promise<void> {
  const dir = path.dirname(file);
  await makeReadableDirs(dir);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${++tmpSerial}.tmp`);
  try {
    const handle = await fs.open(tmp, 'w', 0o644);
    try {
      await handle.writeFile(formatSubnetFile(c));
      await handle.chmod(0o644); // the umask must not narrow it
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Creates `dir` and its missing parents with mode 0755 whatever the umask:
 * a 0644 file in a 0700 directory is no use to readers running as other
 * users. Directories that already existed keep their mode.
 */
async function makeReadableDirs(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  if (first === undefined) return;
  const top = path.resolve(first);
  for (let d = path.resolve(dir); d.startsWith(top); d = path.dirname(d)) {
    await fs.chmod(d, 0o755);
    if (d === top) break;
  }
}

/** What a previous run left: the subnets it held. Absent or unreadable fields are undefined. */
export interface PreviousSubnets {
  readonly subnet?: IPNet;
  readonly ipv6Subnet?: IPNet;
}

/**
 * Reads the previous run's subnets. A missing file is normal (first start);
 * a garbled one is reported through `warn` and ignored, never fatal.
 */
export async function readPreviousSubnets(file: string, warn: (msg: string) => void): Promise<PreviousSubnets> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') warn(`cannot read the previous subnet file ${file} (${code ?? String(err)}); choosing a subnet afresh`);
    return {};
  }
  const vars = parseEnv(text);
  if (!vars.has('FLANNEL_SUBNET') && !vars.has('FLANNEL_IPV6_SUBNET')) {
    warn(`the previous subnet file ${file} holds no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET; choosing a subnet afresh`);
    return {};
  }
  const read = readSubnetVars(vars, (name, value) => {
    // Only the subnets matter to the next acquisition; the other values are rewritten anyway.
    if (name === 'FLANNEL_SUBNET' || name === 'FLANNEL_IPV6_SUBNET') {
      warn(`the previous subnet file ${file} holds an unreadable subnet ${JSON.stringify(value.slice(0, 64))}; ignoring it`);
    }
  });
  return { subnet: read.subnet, ipv6Subnet: read.ipv6Subnet };
}

/** subnet.env's lines as variables; lines that are not `NAME=value` are ignored. */
export function parseEnv(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (m) vars.set(m[1], m[2]);
  }
  return vars;
}

/** What a subnet.env holds, each field undefined when absent or unreadable. */
export type SubnetFileReading = { -readonly [K in keyof SubnetFileContents]?: SubnetFileContents[K] };

/**
 * A subnet.env's text as the values twilld wrote: `subnet` is the node's
 * network (10.244.1.0/24), not the first address the file carries.
 * `onUnreadable` hears of each value present but not readable.
 */
export function parseSubnetFile(text: string, onUnreadable?: (name: string, value: string) => void): SubnetFileReading {
  return readSubnetVars(parseEnv(text), onUnreadable);
}

function readSubnetVars(vars: ReadonlyMap<string, string>, onUnreadable?: (name: string, value: string) => void): SubnetFileReading {
  const net = (name: string, family: 4 | 6): IPNet | undefined => {
    const value = vars.get(name);
    if (value === undefined) return undefined;
    try {
      return IPNet.parse(value, { want: family, allowHostBits: true });
    } catch {
      onUnreadable?.(name, value);
      return undefined;
    }
  };
  const reading: SubnetFileReading = {
    network: net('FLANNEL_NETWORK', 4),
    subnet: net('FLANNEL_SUBNET', 4),
    ipv6Network: net('FLANNEL_IPV6_NETWORK', 6),
    ipv6Subnet: net('FLANNEL_IPV6_SUBNET', 6),
  };
  const mtu = vars.get('FLANNEL_MTU');
  if (mtu !== undefined) {
    if (/^\d+$/.test(mtu)) reading.mtu = Number(mtu);
    else onUnreadable?.('FLANNEL_MTU', mtu);
  }
  const masq = vars.get('FLANNEL_IPMASQ');
  if (masq !== undefined) {
    if (masq === 'true' || masq === 'false') reading.ipMasq = masq === 'true';
    else onUnreadable?.('FLANNEL_IPMASQ', masq);
  }
  return reading;
}
