/**
 * The parts of the `netlink` package this layer uses, imported from its
 * modules one by one. The package's index also loads its generic netlink,
 * nl80211 and WireGuard code: ~5 MB of resident memory and ~25 ms of CPU at
 * start (Node 20: 47.5 MB after require('netlink'), 42.3 MB for these).
 */
export { Flags, FlagsGet, FlagsNew, Protocol } from 'netlink/dist/constants';
export { AttrStream, getU32, parseError, parseMessages, putU32, putU8 } from 'netlink/dist/structs';
export type { NetlinkMessage, StreamData } from 'netlink/dist/structs';
export { createNetlink, NetlinkSocket } from 'netlink/dist/netlink';
export type { ErrnoException } from 'netlink/dist/raw';
import * as rt from 'netlink/dist/rt/structs';
import * as ifla from 'netlink/dist/rt/ifla';
export { rt, ifla };
