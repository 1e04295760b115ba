/**
 * Which instance of the configured backend runs in this node's kernel, so
 * that diagnose checks what twilld actually made: after a live settings
 * migration vxlan may run on `flannel.<VNI>` or `vx<port>.<VNI>` and own its
 * routes by protocol 117 or 121; udp may run on `flannel0` (120) or
 * `flannel1` (124). Found through backendsInKernel (backends/footprint.ts):
 * the left-over whose instance key is the configured one, or, when its
 * settings could not be read back (guessed), one of the same type. When
 * nothing is found the defaults stand (`flannel.<VNI>`, `flannel0`, slot 0),
 * so a missing device is reported by its usual name.
 */
import type { BackendConfig, NetworkConfig } from '../config';
import type { Netlink } from '../netlink';
import type { InstanceSlot } from '../../backends/backend';
import { backendsInKernel, type LeftOver } from '../../backends/footprint';
import { instanceOf } from '../../backends/instance';
import { BACKEND_ROUTE_PROTOCOL, routeProtocol } from '../../backends/route-protocols';
import { IPIP_DEVICE } from '../../backends/ipip';
import { UDP_BESIDE_DEVICE, UDP_DEVICE } from '../../backends/udp';
import { WIREGUARD_DEVICE } from '../../backends/wireguard';
import { deviceName, ipv6DeviceFor, ipv6DeviceName } from '../../backends/vxlan/device';
import { vxlanSettings, type VxlanSettings } from '../../backends/vxlan/settings';

export interface RunningInstance {
  readonly type: string;
  /** Its device (flannel.2, vx4789.2, flannel1…); undefined for a backend without one (host-gw, alloc). */
  readonly device?: string;
  /** The protocol number its routes carry; undefined for a backend that makes no routes. */
  readonly protocol?: number;
  readonly slot: InstanceSlot;
  /** Found in the kernel; false: the defaults are assumed. */
  readonly found: boolean;
}

/** The settings of `backend` the config asks for: the configured ones when it is the configured type, else the defaults. */
function configFor(backend: string, config: NetworkConfig): BackendConfig {
  return config.backend.type === backend ? config.backend : { type: backend, settings: {} };
}

export function vxlanSettingsOrDefault(config: NetworkConfig): VxlanSettings {
  try {
    return vxlanSettings(configFor('vxlan', config));
  } catch {
    return vxlanSettings({ type: 'vxlan', settings: {} });
  }
}

/** The device a backend creates on this node by default (in `slot`), if it has one. */
export function defaultDevice(backend: string, config: NetworkConfig, slot: InstanceSlot = 0): string | undefined {
  // An IPv6-only network has only flanneld's IPv6 device.
  if (backend === 'vxlan') return (config.enableIPv4 ? deviceName : ipv6DeviceName)(vxlanSettingsOrDefault(config).vni);
  if (backend === 'ipip') return IPIP_DEVICE;
  if (backend === 'udp') return slot === 1 ? UDP_BESIDE_DEVICE : UDP_DEVICE;
  if (backend === 'wireguard') return WIREGUARD_DEVICE;
  return undefined;
}

/** The IPv6 device an instance of `config` running as `device` has in dual stack (vxlan's flannel-v6.<VNI>), if any. */
export function ipv6DeviceOf(config: BackendConfig, device: string | undefined): string | undefined {
  if (config.type !== 'vxlan' || !device) return undefined;
  let vni: number;
  try {
    vni = vxlanSettings(config).vni;
  } catch {
    vni = vxlanSettings({ type: 'vxlan', settings: {} }).vni;
  }
  return ipv6DeviceFor(device, vni);
}

function protocolOf(type: string, slot: InstanceSlot): number | undefined {
  return type in BACKEND_ROUTE_PROTOCOL ? routeProtocol(type as keyof typeof BACKEND_ROUTE_PROTOCOL, slot) : undefined;
}

/** What diagnose assumes when the kernel holds nothing of the backend. */
export function defaultInstance(backend: string, config: NetworkConfig): RunningInstance {
  return { type: backend, device: defaultDevice(backend, config), protocol: protocolOf(backend, 0), slot: 0, found: false };
}

export function keyOf(config: BackendConfig): string | undefined {
  try {
    return instanceOf(config).key;
  } catch {
    return undefined; // settings that do not validate name no instance
  }
}

/** What the kernel holds of the instance `key` (a guessed leftover of its type when its settings could not be read back). */
export function findInKernel(key: string | undefined, type: string, inKernel: readonly LeftOver[]): LeftOver | undefined {
  return (key !== undefined ? inKernel.find((l) => !l.guessed && keyOf(l.config) === key) : undefined)
    ?? inKernel.find((l) => l.guessed && l.config.type === type);
}

/** Picks, among what the kernel holds, the instance `backend` (as the config sets it) runs. */
export function matchInstance(backend: string, config: NetworkConfig, inKernel: readonly LeftOver[]): RunningInstance {
  const match = findInKernel(keyOf(configFor(backend, config)), backend, inKernel);
  if (!match) return defaultInstance(backend, config);
  return {
    type: backend,
    device: match.device ?? defaultDevice(backend, config, match.slot),
    protocol: protocolOf(backend, match.slot),
    slot: match.slot,
    found: true,
  };
}

/** The instance of `backend` running in the kernel `nl` reads; the defaults when none (or the kernel cannot be read). */
export async function runningInstance(nl: Netlink, backend: string, config: NetworkConfig): Promise<RunningInstance> {
  let inKernel: LeftOver[];
  try {
    inKernel = await backendsInKernel(nl);
  } catch {
    return defaultInstance(backend, config); // the checks that follow report what netlink refuses
  }
  return matchInstance(backend, config, inKernel);
}

/** The device a backend creates on this node, if it has one: the running instance's when given, else the default name. */
export function overlayDevice(backend: string, config: NetworkConfig, instance?: RunningInstance): string | undefined {
  return instance?.type === backend ? instance.device : defaultDevice(backend, config);
}
