/**
 * twilld's bundle gives etcd3 its gRPC services from a description made at
 * build time (lib/subnet/etcd-services.ts) instead of proto-loader. The two
 * must put the same bytes on the wire and hand etcd3 the same objects, or
 * etcd would see different requests from the daemon than from the CLI.
 */
import { expect } from 'chai';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { Enum, Root, Type } from 'protobufjs';
import { etcdPackageDefinition, type EtcdCodecs, type GrpcMethodDefinition } from '../../lib/subnet/etcd-services';
import { describeEtcdServices, etcd3ProtoFile, etcdCodecsSource, ETCD3_LOADER_OPTIONS } from '../../lib/subnet/etcd-services-describe';

const CONVERSION = { longs: String, enums: String, defaults: true, oneofs: true };

/**
 * An object with every field of `type` set (one of each oneof, one element
 * per repeated field, nested messages two levels deep), as etcd3 would pass
 * it: 64-bit numbers as strings, enums by name, bytes as Buffers.
 */
function sample(type: Type, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    if (field.partOf && field.partOf.oneof[0] !== field.name) continue;
    const resolved = field.resolve().resolvedType;
    let value: unknown;
    if (resolved instanceof Type) {
      if (depth >= 2) continue;
      value = sample(resolved, depth + 1);
    } else if (resolved instanceof Enum) {
      const names = Object.keys(resolved.values);
      value = names[names.length - 1];
    } else {
      switch (field.type) {
        case 'int64': case 'uint64': case 'sint64': case 'fixed64': case 'sfixed64': value = String(9007199254740993n + BigInt(field.id)); break;
        case 'bool': value = true; break;
        case 'string': value = `${field.name}-ü`; break;
        case 'bytes': value = Buffer.from([0, field.id, 255]); break;
        case 'double': case 'float': value = 0.5; break;
        default: value = field.id + 1;
      }
    }
    out[field.name] = field.repeated ? [value] : value;
  }
  return out;
}

describe('etcd services from the build-time description', () => {
  const description = describeEtcdServices();
  const services = JSON.parse(JSON.stringify(description.services)) as typeof description.services;
  // As the bundle has them: the source compiled as part of a script (here by Function, there by the bundle's own compile).
  const codecs = new Function(`return ${etcdCodecsSource(description)};`)() as EtcdCodecs;
  const lean = etcdPackageDefinition(services, CONVERSION, codecs);
  const loaded = loadSync(etcd3ProtoFile(), ETCD3_LOADER_OPTIONS);
  const loaderMethod = (service: string, method: string) => (loaded[service] as Record<string, MethodDefinition<object, object>>)[method];
  const root = Root.fromJSON(description.root);
  it('has every service and method proto-loader gives etcd3, with the same path, streaming and camelCase name', () => {
    const services = Object.keys(loaded).filter((k) => !('format' in loaded[k]));
    expect(Object.keys(lean).sort()).to.deep.equal(services.sort());
    expect(services).to.include.members(['etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Auth']);
    for (const service of services) {
      const methods = Object.keys(loaded[service]);
      expect(Object.keys(lean[service]).sort(), service).to.deep.equal(methods.sort());
      for (const method of methods) {
        const want = loaderMethod(service, method);
        const got: GrpcMethodDefinition = lean[service][method];
        expect([got.path, got.requestStream, got.responseStream, got.originalName], `${service}.${method}`)
          .to.deep.equal([want.path, want.requestStream, want.responseStream, want.originalName]);
      }
    }
    expect(lean['etcdserverpb.KV'].DeleteRange.originalName).to.equal('deleteRange');
  });

  const requests: Array<[service: string, method: string, request: object]> = [
    ['etcdserverpb.KV', 'Range', { key: Buffer.from('/coreos.com/network/subnets/'), range_end: Buffer.from('/coreos.com/network/subnets0'), limit: '500', sort_order: 'ASCEND', revision: '17' }],
    ['etcdserverpb.KV', 'Put', { key: Buffer.from('/coreos.com/network/subnets/10.244.1.0-24'), value: Buffer.from('{"PublicIP":"198.18.0.1"}'), lease: '7587880000000000001', prev_kv: true }],
    ['etcdserverpb.KV', 'Txn', {
      compare: [{ key: Buffer.from('k'), target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
      success: [{ request_put: { key: Buffer.from('k'), value: Buffer.from('v'), lease: '42' } }],
      failure: [{ request_range: { key: Buffer.from('k') } }],
    }],
    ['etcdserverpb.Lease', 'LeaseGrant', { TTL: '86400', ID: '0' }],
    ['etcdserverpb.Lease', 'LeaseKeepAlive', { ID: '7587880000000000001' }],
    ['etcdserverpb.Watch', 'Watch', { create_request: { key: Buffer.from('/coreos.com/network/subnets/'), range_end: Buffer.from('/coreos.com/network/subnets0'), start_revision: '18', prev_kv: true, progress_notify: true } }],
    ['etcdserverpb.Auth', 'Authenticate', { name: 'twill', password: 'secret' }],
  ];

  it('makes codecs for every message and enum the services use', () => {
    expect(Object.keys(codecs.messages)).to.include.members(['etcdserverpb.RangeRequest', 'etcdserverpb.RangeResponse', 'etcdserverpb.TxnRequest', 'etcdserverpb.RequestOp', 'mvccpb.KeyValue', 'mvccpb.Event', 'etcdserverpb.WatchResponse', 'etcdserverpb.LeaseGrantRequest', 'etcdserverpb.AuthenticateRequest', 'etcdserverpb.AlarmRequest']);
    expect(codecs.enums['mvccpb.Event.EventType']).to.deep.equal({ Put: 0, Delete: 1 }); // etcd3's kv.proto names them so
  });

  for (const [service, method, request] of requests) {
    it(`${service}.${method}: the same request bytes, and the same object back`, () => {
      const want = loaderMethod(service, method);
      const got = lean[service][method];
      const bytes = want.requestSerialize(request);
      expect(got.requestSerialize(request).equals(bytes)).to.equal(true);
      expect(bytes.length).to.be.greaterThan(0);
      expect(got.requestDeserialize(bytes)).to.deep.equal(want.requestDeserialize(bytes));
    });
  }

  it('decodes a Range response with 64-bit numbers as strings and enums by name, as etcd3 expects', () => {
    const response = {
      header: { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: '9007199254740993', raft_term: '2' },
      kvs: [{ key: Buffer.from('/coreos.com/network/config'), value: Buffer.from('{"Network":"10.244.0.0/16"}'), create_revision: '3', mod_revision: '9007199254740993', version: '1', lease: '0' }],
      more: false,
      count: '1',
    };
    const want = loaderMethod('etcdserverpb.KV', 'Range');
    const got = lean['etcdserverpb.KV'].Range;
    const bytes = want.responseSerialize(response);
    expect(got.responseSerialize(response).equals(bytes)).to.equal(true);
    const decoded = got.responseDeserialize(bytes) as { header: { revision: string }; kvs: Array<{ mod_revision: string; value: Buffer }> };
    expect(decoded).to.deep.equal(want.responseDeserialize(bytes));
    expect(decoded.header.revision).to.equal('9007199254740993');
    expect(decoded.kvs[0].value.toString()).to.equal('{"Network":"10.244.0.0/16"}');

    const watchBytes = loaderMethod('etcdserverpb.Watch', 'Watch').responseSerialize({ watch_id: '1', events: [{ type: 'Delete', kv: { key: Buffer.from('k') } }] });
    const event = lean['etcdserverpb.Watch'].Watch.responseDeserialize(watchBytes) as { events: Array<{ type: string }> };
    expect(event).to.deep.equal(loaderMethod('etcdserverpb.Watch', 'Watch').responseDeserialize(watchBytes));
    expect(event.events[0].type).to.equal('Delete'); // etcd3's kv.proto names the values Put and Delete
  });

  it('gives proto-loader\'s bytes and objects for every field of every request and response of every method', () => {
    let checked = 0;
    for (const [service, methods] of description.services) {
      for (const [method, , , , requestName, responseName] of methods) {
        const want = loaderMethod(service, method);
        const got = lean[service][method];
        for (const [side, typeName] of [['request', requestName], ['response', responseName]] as const) {
          const what = `${service}.${method} ${side} (${typeName})`;
          const value = sample(root.lookupType(typeName));
          const [serialize, deserialize] = side === 'request'
            ? [[want.requestSerialize, got.requestSerialize], [want.requestDeserialize, got.requestDeserialize]] as const
            : [[want.responseSerialize, got.responseSerialize], [want.responseDeserialize, got.responseDeserialize]] as const;
          const bytes = serialize[0](value);
          expect(serialize[1](value).equals(bytes), what).to.equal(true);
          expect(deserialize[1](bytes), what).to.deep.equal(deserialize[0](bytes));
          // and an empty message, where every field takes its default
          expect(deserialize[1](serialize[1]({})), `${what}, empty`).to.deep.equal(deserialize[0](serialize[0]({})));
          checked++;
        }
      }
    }
    expect(checked).to.be.greaterThan(80);
  });

  it('refuses an array where a message belongs, as proto-loader does', () => {
    expect(() => lean['etcdserverpb.KV'].Range.requestSerialize([] as unknown as object)).to.throw(/array/);
  });
});
