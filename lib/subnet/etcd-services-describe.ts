/**
 * Build time: describes etcd3's gRPC services (its own rpc.proto, read the
 * way etcd3 reads it) for lib/subnet/etcd-services.ts. Used by the daemon
 * bundler and by the test that checks both give the same wire bytes; never
 * loaded by twilld.
 */
import * as path from 'path';
import { loadSync, type Options } from '@grpc/proto-loader';
import { Root } from 'protobufjs';
import type { EtcdMethodDescription, EtcdServicesDescription } from './etcd-services';

/** etcd3's rpc.proto, beside its own package.json. */
export function etcd3ProtoFile(): string {
  return path.join(path.dirname(require.resolve('etcd3/package.json')), 'proto', 'rpc.proto');
}

/** The options etcd3's connection pool passes to proto-loader (node_modules/etcd3/lib/connection-pool.js). */
export const ETCD3_LOADER_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** What grpc-js needs of each etcd service, as proto-loader would give it to etcd3. */
export function describeEtcdServices(protoFile = etcd3ProtoFile()): EtcdServicesDescription {
  const root = new Root();
  root.loadSync(protoFile, { keepCase: true });
  root.resolveAll();
  const loaded = loadSync(protoFile, ETCD3_LOADER_OPTIONS);
  const services: EtcdServicesDescription['services'] = [];
  for (const [name, definition] of Object.entries(loaded)) {
    if ('format' in definition) continue; // a message or enum, not a service
    const service = root.lookupService(name);
    const methods: EtcdMethodDescription[] = Object.entries(definition).map(([method, d]) => {
      const m = service.methods[method];
      if (!m?.resolvedRequestType || !m.resolvedResponseType) throw new Error(`${name}.${method}: its types did not resolve in ${protoFile}`);
      return [method, d.originalName ?? method, d.requestStream, d.responseStream, m.resolvedRequestType.fullName.slice(1), m.resolvedResponseType.fullName.slice(1)];
    });
    services.push([name, methods]);
  }
  if (services.length === 0) throw new Error(`no gRPC service found in ${protoFile}`);
  return { root: root.toJSON(), services };
}
