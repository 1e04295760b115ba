/**
 * Build time: describes etcd3's gRPC services (its own rpc.proto, read the
 * way etcd3 reads it) for lib/subnet/etcd-services.ts. Used by the daemon
 * bundler and by the test that checks both give the same wire bytes; never
 * loaded by twilld.
 */
import * as path from 'path';
import { loadSync, type Options } from '@grpc/proto-loader';
import { converter, decoder, encoder, Root, Type } from 'protobufjs';
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

/** The services twilld calls; codecs are made ahead for their messages only (the rest keep protobufjs's run-time ones). */
export const TWILLD_ETCD_SERVICES: readonly string[] = ['etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Auth'];

/**
 * JavaScript source of an object literal (lib/subnet/etcd-services.ts
 * `EtcdCodecs`): per message type the services use, the constructor,
 * encoder, decoder and converters protobufjs would otherwise generate with
 * `new Function` at every start (~10 ms; code made that way is in no code
 * cache), each wrapped in a function of the names it reads. Made from the
 * same reflection the daemon builds (`description.root`), by protobufjs's
 * own generators, so the functions are the ones it would make.
 */
export function etcdCodecsSource(description: EtcdServicesDescription, services: readonly string[] = TWILLD_ETCD_SERVICES): string {
  const root = Root.fromJSON(description.root);
  const types = new Map<string, Type>();
  const visit = (t: Type): void => {
    const name = t.fullName.slice(1);
    if (types.has(name)) return;
    types.set(name, t);
    for (const f of t.fieldsArray) {
      const r = f.resolve().resolvedType;
      if (r instanceof Type) visit(r);
    }
  };
  for (const [service, methods] of description.services) {
    if (!services.includes(service)) continue;
    for (const [, , , , request, response] of methods) for (const name of [request, response]) visit(root.lookupType(name));
  }
  const entries = [...types].map(([name, t]) => {
    if (name.startsWith('google.protobuf.')) throw new Error(`${name}: protobufjs wraps the well-known types; leave them to it`);
    return `${JSON.stringify(name)}: {
  ctor: function () { return ${Type.generateConstructor(t).toString()}; },
  encode: function (Writer, types, util) { return ${encoder(t).toString()}; },
  decode: function (Reader, types, util) { return ${decoder(t).toString()}; },
  fromObject: function (types, util) { return ${converter.fromObject(t).toString()}; },
  toObject: function (types, util) { return ${converter.toObject(t).toString()}; }
}`;
  });
  return `{${entries.join(',\n')}}`;
}
