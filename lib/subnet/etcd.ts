/** etcd mode: the client, the registry of keys, the lease watcher and the subnet manager (loads etcd3). */
export * from './etcd-client';
export * from './etcd-registry';
export * from './lease-watcher';
export * from './manager';
