/**
 * Node's `net` module as grpc-js sees it inside the daemon bundle
 * (cmd/bundle-daemon.ts resolves grpc-js's `require("net")` here): the same
 * module, with an `isIPv6` that answers "no" at once for text without a
 * colon.
 *
 * Why: grpc-js asks `net.isIPv6` of every etcd address it connects to, and
 * the first call of Node's test compiles its IPv6 pattern, one of the
 * largest regular expressions in Node: ~8 ms of CPU at every start (a CPU
 * profile of twilld up to subnet.env), for IPv4 endpoints in most clusters.
 * Every IPv6 address in text has at least two colons, so the answer is the
 * same for every string.
 */
import net = require('net');

export function isIPv6(text: string): boolean {
  return text.includes(':') && net.isIPv6(text);
}

/** What grpc-js gets for `require("net")`: everything of Node's module, isIPv6 from above. */
export const grpcNet: typeof net = Object.create(net, { isIPv6: { value: isIPv6, enumerable: true } }) as typeof net;
