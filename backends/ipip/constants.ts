export const IPIP_DEVICE = 'flannel.ipip';
export const IPIP_OVERHEAD = 20;

export const NO_KERNEL_IPIP =
  'the ipip backend cannot run in kernel mode: this kernel has no ipip support (the "ipip" link type is unknown; the ipip module is missing or not loadable). ' +
  'Load it with "modprobe ipip" on the node, or set Backend.Mode to "userspace" (or "auto", the default) for the userspace ipip datapath, or use the vxlan backend';
