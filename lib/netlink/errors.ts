/**
 * Typed errors of the netlink layer.
 *
 * Every failure the kernel reports comes back as a `NetlinkError` carrying the
 * operation ("replace route"), the object it was applied to
 * ("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink") and the errno name
 * ("EEXIST"), so callers branch on `code` or `instanceof`, never on message
 * text. A link type the kernel does not have is an `UnsupportedLinkKindError`.
 */
import { constants as osConstants } from 'os';
import { getSystemErrorMap } from 'util';

/** errno number → name. Where Linux gives two names to one number, the one iproute2 and the kernel headers print wins. */
const ERRNO_NAMES: ReadonlyMap<number, string> = (() => {
  const preferred = new Set(['EOPNOTSUPP', 'EAGAIN', 'EDEADLK']);
  const names = new Map<number, string>();
  for (const [name, value] of Object.entries(osConstants.errno)) {
    if (!names.has(value) || preferred.has(name)) names.set(value, name);
  }
  return names;
})();

/** The symbolic name of a (positive) errno, e.g. 95 → 'EOPNOTSUPP' (libuv would say 'ENOTSUP'). */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** The errno number of a name, or 0 for names that are not errnos (e.g. our own 'ETIMEDOUT' is one; 'EBADMSG' too). */
export function errnoNumber(code: string): number {
  return (osConstants.errno as Record<string, number | undefined>)[code] ?? 0;
}

/** What the kernel means by an errno in answer to rtnetlink requests, where libuv's generic text would mislead. */
const RTNETLINK_MEANINGS: Readonly<Record<string, string>> = {
  EEXIST: 'it already exists',
  ENODEV: 'no such device',
  ESRCH: 'no such route',
  ENOENT: 'no such entry',
  EADDRNOTAVAIL: 'no such address on the device',
  EOPNOTSUPP: 'not supported by this kernel',
  ENETUNREACH: 'the gateway is not on a subnet of the device (use onlink?)',
  ENETDOWN: 'the device is down',
  EPERM: 'not permitted: needs CAP_NET_ADMIN in this network namespace',
  ETIMEDOUT: 'no answer from the kernel',
  ECANCELED: 'the netlink socket was closed',
  ENOBUFS: 'the answer was lost (socket receive buffer overflowed); the outcome is unknown',
};

function describeErrno(code: string, errno: number): string {
  const meaning = RTNETLINK_MEANINGS[code];
  if (meaning) return meaning;
  const entry = errno > 0 ? getSystemErrorMap().get(-errno) : undefined;
  return entry ? entry[1] : 'unknown error';
}

/** A request the kernel (or the socket carrying it) refused. */
export class NetlinkError extends Error {
  /** errno name: 'EEXIST', 'ENODEV', 'EOPNOTSUPP', 'ESRCH', 'ENOBUFS', 'ETIMEDOUT', … */
  readonly code: string;
  /** positive errno number (0 when the failure did not come with one). */
  readonly errno: number;

  constructor(
    /** what was attempted: 'replace route', 'create link', 'list routes', … */
    readonly operation: string,
    /** the object it was attempted on, as `ip` would print it. */
    readonly object: string,
    code: string,
    detail?: string,
  ) {
    const errno = errnoNumber(code);
    super(`${operation}${object ? ` ${object}` : ''}: ${code} (${detail ?? describeErrno(code, errno)})`);
    this.name = 'NetlinkError';
    this.code = code;
    this.errno = errno;
  }

  /** Builds the error for a negative errno as found in an NLMSG_ERROR reply. */
  static fromKernel(operation: string, object: string, negativeErrno: number): NetlinkError {
    return new NetlinkError(operation, object, errnoName(-negativeErrno));
  }
}

/**
 * The kernel has no such link type ("Unknown device type", EOPNOTSUPP): e.g.
 * `ipip`, `gre`, `geneve` or `wireguard` on a kernel built without them.
 * A backend that needs the type should report that the kernel lacks it
 * rather than retry.
 */
export class UnsupportedLinkKindError extends NetlinkError {
  constructor(operation: string, object: string, readonly kind: string) {
    super(operation, object, 'EOPNOTSUPP', `the kernel has no "${kind}" link type; load its module or choose another backend`);
    this.name = 'UnsupportedLinkKindError';
  }
}

/** A caller passed a value this layer cannot encode (bad address, MAC, prefix…). Nothing was sent to the kernel. */
export class InvalidArgumentError extends Error {
  constructor(readonly field: string, readonly value: unknown, readonly expected: string) {
    super(`${field}: ${JSON.stringify(value)} is not ${expected}`);
    this.name = 'InvalidArgumentError';
  }
}

/** True when creating a link failed because the kernel lacks its type. */
export function isUnsupportedLinkKind(err: unknown): err is UnsupportedLinkKindError {
  return err instanceof UnsupportedLinkKindError;
}

/**
 * True when the object named does not exist. The kernel says so differently
 * per object: ENODEV (link), ESRCH (route), ENOENT (neighbour, FDB entry),
 * EADDRNOTAVAIL (address).
 */
export function isNotFound(err: unknown): err is NetlinkError {
  return err instanceof NetlinkError && ['ENODEV', 'ESRCH', 'ENOENT', 'EADDRNOTAVAIL'].includes(err.code);
}

/** True when the object already exists (an exclusive create, EEXIST). */
export function isAlreadyExists(err: unknown): err is NetlinkError {
  return err instanceof NetlinkError && err.code === 'EEXIST';
}
