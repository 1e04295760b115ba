/**
 * What every part of twill shares about subnets and leases, without any
 * store's client: etcd mode's parts are in ./etcd (which loads etcd3, grpc-js
 * and protobufjs, ~23 MB), kube mode's in ./kube (lib/kube's HTTP client), so
 * a daemon loads only the store it runs on. Interfaces of both are
 * re-exported here as types only, which load nothing.
 */
export * from './lease';
export * from './lease-codec';
export * from './allocator';
export * from './lease-validation';
export * from './subnet-file';
export * from './lease-filter';
export * from './kube-lease';
export type { SubnetManager, NetworkConfigWatch, NetworkConfigWatchHooks } from './manager';
export type { LeaseView, LeaseWatcherHooks } from './lease-watcher';
export type { RawKV, LeaseListing } from './etcd-registry';
