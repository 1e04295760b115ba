/** Kubernetes mode: the subnet manager on Node objects, its Node watch and the net-conf file (loads lib/kube). */
export * from './kube-lease-watcher';
export * from './kube-manager';
export * from './net-conf-file';
