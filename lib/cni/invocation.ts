/**
 * The CNI_* environment variables a runtime sets for one plugin call (CNI
 * spec 1.0.0, "Parameters"), checked the way the spec asks: a missing or
 * malformed variable is error 4 naming it. What each command needs:
 *
 *   ADD, CHECK: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH
 *   DEL:        CNI_CONTAINERID, CNI_IFNAME, CNI_PATH (CNI_NETNS may be gone)
 *   VERSION:    nothing
 */
import { CniError, ERR } from './errors';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

export interface Invocation {
  readonly command: CniCommand;
  readonly containerId: string;
  /** Empty on a DEL whose namespace is already gone. */
  readonly netns: string;
  readonly ifname: string;
  /** CNI_PATH split into directories, in order. */
  readonly path: readonly string[];
}

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION'];

/** The spec's container id: an alphanumeric, then alphanumerics, `_`, `.` or `-`. Also a safe file name. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Reads the invocation from `env`. Returns undefined when CNI_COMMAND is
 * unset (a person ran the binary, not a runtime).
 */
export function readInvocation(env: NodeJS.ProcessEnv): Invocation | undefined {
  const command = env.CNI_COMMAND;
  if (command === undefined || command === '') return undefined;
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(ERR.INVALID_ENV, `CNI_COMMAND ${JSON.stringify(command)} is not one of ${COMMANDS.join(', ')}`);
  }
  const cmd = command as CniCommand;
  if (cmd === 'VERSION') return { command: cmd, containerId: '', netns: '', ifname: '', path: [] };

  const missing = ['CNI_CONTAINERID', ...(cmd === 'DEL' ? [] : ['CNI_NETNS']), 'CNI_IFNAME', 'CNI_PATH'].filter((v) => !env[v]);
  if (missing.length) {
    throw new CniError(ERR.INVALID_ENV, `${cmd} needs ${missing.join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not set`);
  }
  const containerId = env.CNI_CONTAINERID!;
  if (!CONTAINER_ID.test(containerId)) {
    throw new CniError(ERR.INVALID_ENV, `CNI_CONTAINERID ${JSON.stringify(containerId)} is not a container id: it must start with a letter or digit and hold only letters, digits, "_", "." and "-"`);
  }
  const ifname = env.CNI_IFNAME!;
  if (ifname.length > 15 || ifname === '.' || ifname === '..' || /[/:\s]/.test(ifname)) {
    throw new CniError(ERR.INVALID_ENV, `CNI_IFNAME ${JSON.stringify(ifname)} is not an interface name: at most 15 characters, not "." or "..", no "/", ":" or whitespace`);
  }
  const path = env.CNI_PATH!.split(':').filter(Boolean);
  return { command: cmd, containerId, netns: env.CNI_NETNS ?? '', ifname, path };
}
