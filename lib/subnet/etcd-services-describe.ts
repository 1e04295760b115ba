/**
 * Build time: describes etcd3's gRPC services (its own rpc.proto, read the
 * way etcd3 reads it) and makes their message codecs for
 * lib/subnet/etcd-services.ts. Used by the daemon bundler and by the test
 * that checks both give proto-loader's wire bytes; never loaded by twilld.
 */
import * as path from 'path';
import { loadSync, type Options } from '@grpc/proto-loader';
import { converter, decoder, encoder, Enum, Root, Type, type INamespace } from 'protobufjs';
import type { EtcdMethodDescription, EtcdServiceList } from './etcd-services';

export interface EtcdServicesDescription {
  /** protobufjs's JSON of rpc.proto and its imports (Root.toJSON), for the generators. */
  root: INamespace;
  /** What the daemon's bundle carries: each service with its methods. */
  services: EtcdServiceList;
}

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

/**
 * JavaScript source of lib/subnet/etcd-services.ts's `EtcdCodecs`: for every
 * message the services send or receive, the constructor, encoder, decoder
 * and converters protobufjs would otherwise generate with `new Function` at
 * every start (code made that way is in no code cache), each wrapped in a
 * function of the names it reads, with the type each field's code indexes;
 * and the values of every enum those messages use. Made by protobufjs's
 * own generators from the reflection of `description.root`, so the
 * functions are the ones it would make.
 */
export function etcdCodecsSource(description: EtcdServicesDescription): string {
  const root = Root.fromJSON(description.root);
  const messages = new Map<string, Type>();
  const enums = new Map<string, Enum>();
  const nameOf = (t: Type | Enum): string => t.fullName.slice(1);
  const visit = (t: Type): void => {
    const name = nameOf(t);
    if (messages.has(name)) return;
    if (name.startsWith('google.protobuf.')) throw new Error(`${name}: protobufjs wraps the well-known types; leave them to it`);
    messages.set(name, t);
    for (const f of t.fieldsArray) {
      const r = f.resolve().resolvedType;
      if (r instanceof Type) visit(r);
      else if (r instanceof Enum) enums.set(nameOf(r), r);
    }
  };
  for (const [, methods] of description.services) {
    for (const [, , , , request, response] of methods) for (const name of [request, response]) visit(root.lookupType(name));
  }
  const fieldTypes = (t: Type): Array<string | null> => t.fieldsArray.map((f) => {
    const r = f.resolve().resolvedType;
    return r ? nameOf(r) : null;
  });
  const messageEntries = [...messages].map(([name, t]) => `${JSON.stringify(name)}: {
  types: ${JSON.stringify(fieldTypes(t))},
  ctor: function () { return ${Type.generateConstructor(t).toString()}; },
  encode: function (Writer, types, util) { return ${encoder(t).toString()}; },
  decode: function (Reader, types, util) { return ${decoder(t).toString()}; },
  fromObject: function (types, util) { return ${converter.fromObject(t).toString()}; },
  toObject: function (types, util) { return ${converter.toObject(t).toString()}; }
}`);
  const enumEntries = [...enums].map(([name, e]) => `${JSON.stringify(name)}: ${JSON.stringify({ ...e.values })}`);
  return `{messages: {${messageEntries.join(',\n')}},\nenums: {${enumEntries.join(',\n')}}}`;
}
