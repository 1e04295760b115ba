/**
 * backends/userspace — the userspace datapath the udp backend and the
 * userspace mode of the ipip backend run on: a native engine (native/,
 * built from binding.gyp into the twill-dataplane program), run and
 * supervised over its Unix socket by EngineSupervisor.
 */
export {
  EngineSupervisor,
  EngineSupervisorOptions,
  DatapathMode,
  PeerEntry,
  DatapathCounters,
  CrashInfo,
  RestartInfo,
  DEFAULT_UDP_PORT,
  encodePeers,
} from './engine-supervisor';
export { tunAvailable, userspaceDatapathAvailable, Availability, TUN_MISSING } from './tun';
export { EngineInfo, EngineCounters } from './native-engine';
export { TunUnavailableError, EngineNotBuiltError, DatapathStartError, DatapathDownError, InvalidPeerError } from './errors';
export { DataplaneRequestError } from './dataplane-process';
export { UserspaceTunnel, TunnelOptions } from './tunnel';
export { TunnelBackend } from './tunnel-backend';
