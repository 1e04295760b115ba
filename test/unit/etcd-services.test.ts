/**
 * twilld's bundle gives etcd3 its gRPC services from a description made at
 * build time (lib/subnet/etcd-services.ts) instead of proto-loader. The two
 * must put the same bytes on the wire and hand etcd3 the same objects, or
 * etcd would see different requests from the daemon than from the CLI.
 */
import { expect } from 'chai';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { etcdPackageDefinition, type EtcdCodecs, type GrpcMethodDefinition } from '../../lib/subnet/etcd-services';
import { describeEtcdServices, etcd3ProtoFile, etcdCodecsSource, ETCD3_LOADER_OPTIONS } from '../../lib/subnet/etcd-services-describe';

const CONVERSION = { longs: String, enums: String, defaults: true, oneofs: true };

describe('etcd services from the build-time description', () => {
  const description = describeEtcdServices();
  const lean = etcdPackageDefinition(JSON.parse(JSON.stringify(description)), CONVERSION);
  // As the bundle has them: the source compiled as part of a script (here by Function, there by the bundle's own compile).
  const codecs = new Function(`return ${etcdCodecsSource(description)};`)() as EtcdCodecs;
  const ahead = etcdPackageDefinition(JSON.parse(JSON.stringify(description)), CONVERSION, codecs);
  const loaded = loadSync(etcd3ProtoFile(), ETCD3_LOADER_OPTIONS);
  const loaderMethod = (service: string, method: string) => (loaded[service] as Record<string, MethodDefinition<object, object>>)[method];

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

  it('makes codecs ahead for the messages of KV, Watch, Lease and Auth', () => {
    expect(Object.keys(codecs)).to.include.members(['etcdserverpb.RangeRequest', 'etcdserverpb.RangeResponse', 'etcdserverpb.TxnRequest', 'etcdserverpb.RequestOp', 'mvccpb.KeyValue', 'mvccpb.Event', 'etcdserverpb.WatchResponse', 'etcdserverpb.LeaseGrantRequest', 'etcdserverpb.AuthenticateRequest']);
    expect(Object.keys(codecs)).to.not.include('etcdserverpb.AlarmRequest'); // Maintenance: twilld never calls it
  });

  for (const [service, method, request] of requests) for (const [codegen, def] of [['run-time codecs', lean], ['codecs made ahead', ahead]] as const) {
    it(`${service}.${method} (${codegen}): the same request bytes, and the same object back`, () => {
      const want = loaderMethod(service, method);
      const got = def[service][method];
      const bytes = want.requestSerialize(request);
      expect(got.requestSerialize(request).equals(bytes)).to.equal(true);
      expect(bytes.length).to.be.greaterThan(0);
      expect(got.requestDeserialize(bytes)).to.deep.equal(want.requestDeserialize(bytes));
    });
  }

  for (const [codegen, def] of [['run-time codecs', lean], ['codecs made ahead', ahead]] as const) it(`decodes a Range response with 64-bit numbers as strings and enums by name, as etcd3 expects (${codegen})`, () => {
    const response = {
      header: { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: '9007199254740993', raft_term: '2' },
      kvs: [{ key: Buffer.from('/coreos.com/network/config'), value: Buffer.from('{"Network":"10.244.0.0/16"}'), create_revision: '3', mod_revision: '9007199254740993', version: '1', lease: '0' }],
      more: false,
      count: '1',
    };
    const want = loaderMethod('etcdserverpb.KV', 'Range');
    const got = def['etcdserverpb.KV'].Range;
    const bytes = want.responseSerialize(response);
    expect(got.responseSerialize(response).equals(bytes)).to.equal(true);
    const decoded = got.responseDeserialize(bytes) as { header: { revision: string }; kvs: Array<{ mod_revision: string; value: Buffer }> };
    expect(decoded).to.deep.equal(want.responseDeserialize(bytes));
    expect(decoded.header.revision).to.equal('9007199254740993');
    expect(decoded.kvs[0].value.toString()).to.equal('{"Network":"10.244.0.0/16"}');

    const watchBytes = loaderMethod('etcdserverpb.Watch', 'Watch').responseSerialize({ watch_id: '1', events: [{ type: 'Delete', kv: { key: Buffer.from('k') } }] });
    const event = def['etcdserverpb.Watch'].Watch.responseDeserialize(watchBytes) as { events: Array<{ type: string }> };
    expect(event).to.deep.equal(loaderMethod('etcdserverpb.Watch', 'Watch').responseDeserialize(watchBytes));
    expect(event.events[0].type).to.equal('Delete'); // etcd3's kv.proto names the values Put and Delete
  });

  it('refuses an array where a message belongs, as proto-loader does', () => {
    expect(() => lean['etcdserverpb.KV'].Range.requestSerialize([] as unknown as object)).to.throw(/array/);
  });
});
