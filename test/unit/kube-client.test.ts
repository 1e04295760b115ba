/**
 * lib/kube without a real API server: kubeconfig and in-cluster config,
 * the YAML subset, and the client against a scripted HTTP server on
 * 127.0.0.1 (error texts, watch stream parsing, 410, timeouts, aborts).
 */
import { expect } from 'chai';
import * as http from 'http';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AddressInfo } from 'net';
import { load } from 'js-yaml';
import {
  AnnotationPrefixError, GoneError, KubeApiError, KubeClient, KubeConfig, KubeConfigError, KubeConnectionError, KubeProtocolError, KubeTimeoutError,
  NodeWatchEvent, flannelAnnotations, loadKubeConfig, parseKubeconfig,
} from '../../lib/kube';
import { parseKubeconfigYaml } from '../../lib/kube/kubeconfig-yaml';
import { findKubeApiserver } from '../harness/kube-apiserver';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** The layout `kubectl config view --raw` and kubeadm write. */
const KUBECTL_STYLE = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${b64('CA PEM')}
    server: https://10.0.0.1:6443
  name: kubernetes
- cluster:
    insecure-skip-tls-verify: true
    server: https://other:6443
  name: other
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${b64('CERT PEM')}
    client-key-data: ${b64('KEY PEM')}
`;

/** Hand-written: indented lists, quotes, comments, a document marker. */
const HAND_WRITTEN = `---
# written by hand
apiVersion: "v1"
kind: Config
current-context: 'flannel'   # the only context
clusters:
  - name: local
    cluster:
      server: "https://[fd00::1]:6443/"
      tls-server-name: api.example
      certificate-authority: ca.crt
contexts:
  - name: flannel
    context:
      cluster: local
      user: flannel
users:
  - name: flannel
    user:
      token: "abc.def"
`;

describe('kubeconfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'twill-kubeconfig-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string): string => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('reads the current context of a kubeconfig as kubectl writes it', () => {
    const cfg = loadKubeConfig({ kubeconfigFile: write('config', KUBECTL_STYLE) });
    expect(cfg.server).to.equal('https://10.0.0.1:6443');
    expect(cfg.ca?.toString()).to.equal('CA PEM');
    expect(cfg.clientCert?.toString()).to.equal('CERT PEM');
    expect(cfg.clientKey?.toString()).to.equal('KEY PEM');
    expect(cfg.insecureSkipTlsVerify).to.equal(false);
    expect(cfg.bearerToken()).to.equal(undefined);
    expect(cfg.source).to.include('kubernetes-admin@kubernetes');
  });

  it('parses the YAML it accepts exactly as a full YAML parser does', () => {
    for (const doc of [KUBECTL_STYLE, HAND_WRITTEN, 'a:\n  - x\n  - "y # not a comment"\n  - \'it\'\'s\'\nb: ~\nc: false\nd:\n']) {
      expect(parseKubeconfigYaml(doc, 'f')).to.deep.equal(load(doc));
    }
  });

  it('reads a JSON kubeconfig', () => {
    const json = JSON.stringify(load(KUBECTL_STYLE));
    expect(loadKubeConfig({ kubeconfigFile: write('config.json', json) }).server).to.equal('https://10.0.0.1:6443');
  });

  it('refuses YAML outside the subset with the line and the key path', () => {
    const bad: [string, RegExp][] = [
      ['users:\n- name: a\n  user:\n    token: |\n      abc\n', /line 4 \(users\[0\]\.user\.token\): block scalars/],
      ['a: &x 1\n', /line 1 \(a\): anchors and aliases/],
      ['a:\n\tb: 1\n', /line 2: a tab in the indentation/],
      ['contexts:\n- context: {cluster: x}\n', /line 2 \(contexts\[0\]\.context\): flow collections/],
      ['a: 1\na: 2\n', /line 2 \(a\): the key appears twice/],
      ['a: one\n  two\n', /line 2 \(a\): a value continued on the next line/],
      ['a: 1\n---\nb: 2\n', /line 2: a second YAML document/],
    ];
    for (const [text, re] of bad) {
      expect(() => parseKubeconfigYaml(text, 'kc'), text).to.throw(KubeConfigError, re);
    }
  });

  it('refuses credentials it cannot use, naming the field', () => {
    const exec = KUBECTL_STYLE.replace(/  user:\n[\s\S]*$/, '  user:\n    exec:\n      command: aws\n');
    expect(() => loadKubeConfig({ kubeconfigFile: write('exec', exec) })).to.throw(KubeConfigError, /users\[0\]\.user\.exec is not supported by twilld/);
    const basic = KUBECTL_STYLE.replace(/  user:\n[\s\S]*$/, '  user:\n    username: a\n    password: b\n');
    expect(() => loadKubeConfig({ kubeconfigFile: write('basic', basic) })).to.throw(KubeConfigError, /users\[0\]\.user\.(username|password) is not supported/);
    const proxy = KUBECTL_STYLE.replace('    server: https://10.0.0.1:6443', '    server: https://10.0.0.1:6443\n    proxy-url: http://p:3128');
    expect(() => loadKubeConfig({ kubeconfigFile: write('proxy', proxy) })).to.throw(KubeConfigError, /clusters\[0\]\.cluster\.proxy-url is not supported/);
  });

  it('reads certificate and token files relative to the kubeconfig, and a tokenFile', () => {
    write('ca.crt', 'CA FROM FILE');
    const cfg = loadKubeConfig({ kubeconfigFile: write('config', HAND_WRITTEN) });
    expect(cfg.server).to.equal('https://[fd00::1]:6443');
    expect(cfg.ca?.toString()).to.equal('CA FROM FILE');
    expect(cfg.tlsServerName).to.equal('api.example');
    expect(cfg.bearerToken()).to.equal('abc.def');

    write('token', 'from-file\n');
    const viaFile = loadKubeConfig({ kubeconfigFile: write('config2', HAND_WRITTEN.replace('token: "abc.def"', 'tokenFile: token')) });
    expect(viaFile.bearerToken()).to.equal('from-file');
  });

  it('says which file and field is wrong', () => {
    const f = write('config', HAND_WRITTEN);
    expect(() => loadKubeConfig({ kubeconfigFile: f })).to.throw(KubeConfigError, /clusters\[0\]\.cluster\.certificate-authority.*ca\.crt/);
    expect(() => parseKubeconfig(KUBECTL_STYLE.replace(/current-context: .*/, ''), 'k')).to.throw(KubeConfigError, /current-context is not set/);
    expect(() => parseKubeconfig(KUBECTL_STYLE.replace('cluster: kubernetes', 'cluster: nope'), 'k')).to.throw(KubeConfigError, /clusters has no entry named "nope"/);
    const both = KUBECTL_STYLE.replace('    server: https://10.0.0.1:6443', '    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true');
    expect(() => parseKubeconfig(both, 'k')).to.throw(KubeConfigError, /sets both insecure-skip-tls-verify and a certificate authority/);
    expect(() => parseKubeconfig(KUBECTL_STYLE.replace(/    client-key-data: .*\n/, ''), 'k')).to.throw(KubeConfigError, /client certificate without its key/);
    expect(() => loadKubeConfig({ kubeconfigFile: path.join(dir, 'missing') })).to.throw(KubeConfigError, /cannot read the kubeconfig file .*missing/);
  });

  it('uses the pod\'s service account in a cluster, and --kube-api-url replaces only the server', () => {
    write('token', 'sa-token\n');
    write('ca.crt', 'SA CA');
    const env = { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' };
    const cfg = loadKubeConfig({ env, serviceAccountDir: dir });
    // 443 is https's own port: the URL carries it implicitly.
    expect(cfg.server).to.equal('https://[fd00::1]');
    expect(cfg.bearerToken()).to.equal('sa-token');
    expect(cfg.ca?.toString()).to.equal('SA CA');
    const direct = loadKubeConfig({ env, serviceAccountDir: dir, apiUrl: 'https://10.0.0.1:6443/' });
    expect(direct.server).to.equal('https://10.0.0.1:6443');
    expect(direct.bearerToken()).to.equal('sa-token');

    // Outside a pod, --kube-api-url alone means no credentials (client-go's BuildConfigFromFlags does the same).
    const bare = loadKubeConfig({ env: {}, apiUrl: 'http://127.0.0.1:8080' });
    expect(bare.bearerToken()).to.equal(undefined);
    expect(() => loadKubeConfig({ env: {} })).to.throw(KubeConfigError, /give --kubeconfig-file or --kube-api-url, or run in a pod/);
    expect(() => loadKubeConfig({ env, serviceAccountDir: path.join(dir, 'none') })).to.throw(KubeConfigError, /service account token/);
    expect(() => loadKubeConfig({ env: {}, apiUrl: 'ftp://x' })).to.throw(KubeConfigError, /--kube-api-url: "ftp:\/\/x" must be an http:\/\/ or https:\/\/ URL/);
  });
});

/** A scripted API server: each test sets `handle`. */
describe('KubeClient against a scripted server', () => {
  let server: http.Server;
  let handle: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;
  let client: KubeClient;
  const unhandled: unknown[] = [];
  const onUnhandled = (r: unknown): void => {
    unhandled.push(r);
  };

  const config = (port: number): KubeConfig => ({
    server: `http://127.0.0.1:${port}`, insecureSkipTlsVerify: false, bearerToken: () => 'tok', source: 'test',
  });

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => handle(req, res, body));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  beforeEach(() => {
    client = new KubeClient(config((server.address() as AddressInfo).port), { requestTimeoutMs: 500, watchIdleTimeoutMs: 500 });
  });
  afterEach(() => client.close());
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    // Give any stray rejection a turn to surface before checking.
    await new Promise((r) => setImmediate(r));
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).to.deep.equal([]);
  });

  const node = (name: string, rv: string, extra: object = {}): object => ({ kind: 'Node', metadata: { name, resourceVersion: rv, annotations: { a: 'b' } }, spec: { podCIDR: '10.244.1.0/24' }, ...extra });
  const status = (code: number, reason: string, message: string): string => JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code });

  it('turns a 403 into a KubeApiError naming verb, resource, code and the API\'s message', async () => {
    let seen: { method?: string; url?: string; auth?: string; type?: string; body?: string } = {};
    handle = (req, res, body) => {
      seen = { method: req.method, url: req.url, auth: req.headers.authorization, type: req.headers['content-type'], body };
      res.writeHead(403, { 'Content-Type': 'application/json' });
      res.end(status(403, 'Forbidden', 'nodes "n1" is forbidden: User "system:serviceaccount:kube-flannel:flannel" cannot patch resource "nodes/status" in API group "" at the cluster scope'));
    };
    const err = await client.patchNodeStatus('n1', { metadata: { annotations: { k: 'v' } } }).then(() => undefined, (e: unknown) => e);
    expect(seen).to.deep.equal({
      method: 'PATCH', url: '/api/v1/nodes/n1/status', auth: 'Bearer tok',
      type: 'application/strategic-merge-patch+json', body: '{"metadata":{"annotations":{"k":"v"}}}',
    });
    expect(err).to.be.instanceOf(KubeApiError);
    expect((err as Error).message).to.equal(
      'the Kubernetes API refused to patch nodes/status "n1": 403 Forbidden: nodes "n1" is forbidden: User "system:serviceaccount:kube-flannel:flannel" ' +
      'cannot patch resource "nodes/status" in API group "" at the cluster scope (RBAC: the ClusterRole bound to this identity must allow "patch" on "nodes/status")',
    );
  });

  it('quotes a non-Status error body, and sends a merge patch of the Node itself', async () => {
    let url = '';
    let type = '';
    handle = (req, res) => {
      url = req.url ?? '';
      type = String(req.headers['content-type']);
      res.writeHead(502, 'Bad Gateway');
      res.end('upstream unavailable');
    };
    const err = await client.patchNodeMetadata('n 1', { labels: { x: null } }, 'merge').then(() => undefined, (e: unknown) => e);
    expect(url).to.equal('/api/v1/nodes/n%201');
    expect(type).to.equal('application/merge-patch+json');
    expect((err as KubeApiError).code).to.equal(502);
    expect((err as Error).message).to.include('patch nodes "n 1": 502 Bad Gateway: upstream unavailable');
  });

  it('lists page by page and keeps the first page\'s resourceVersion', async () => {
    const urls: string[] = [];
    handle = (req, res) => {
      urls.push(req.url ?? '');
      const second = (req.url ?? '').includes('continue=');
      res.end(JSON.stringify({
        kind: 'NodeList', metadata: { resourceVersion: second ? '99' : '42', ...(second ? {} : { continue: 'tok/en' }) },
        items: second ? [node('b', '41')] : [node('a', '40')],
      }));
    };
    const list = await new KubeClient(config((server.address() as AddressInfo).port), { listPageSize: 1 }).listNodes();
    expect(urls).to.deep.equal(['/api/v1/nodes?limit=1', '/api/v1/nodes?limit=1&continue=tok%2Fen']);
    expect(list.resourceVersion).to.equal('42');
    expect(list.items.map((n) => n.metadata.name)).to.deep.equal(['a', 'b']);
    expect(list.items[0]).to.deep.equal({
      metadata: { name: 'a', uid: undefined, resourceVersion: '40', annotations: { a: 'b' }, labels: {}, creationTimestamp: undefined, deletionTimestamp: undefined },
      spec: { podCIDR: '10.244.1.0/24' },
      status: { addresses: [], conditions: [] },
    });
  });

  it('refuses a Node without a name as a KubeProtocolError', async () => {
    handle = (_req, res) => res.end(JSON.stringify({ kind: 'Node', metadata: { resourceVersion: '1' } }));
    const err = await client.getNode('x').then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubeProtocolError);
    expect((err as Error).message).to.equal('unexpected answer to get nodes "x": metadata.name is missing');
  });

  it('reads watch events split anywhere across chunks, and returns the last resourceVersion when the server ends the stream', async () => {
    let url = '';
    handle = (req, res) => {
      url = req.url ?? '';
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const text = [
        JSON.stringify({ type: 'ADDED', object: node('a', '11') }),
        JSON.stringify({ type: 'MODIFIED', object: node('a', '12') }),
        JSON.stringify({ type: 'BOOKMARK', object: { kind: 'Node', metadata: { resourceVersion: '15' } } }),
        JSON.stringify({ type: 'DELETED', object: node('a', '16') }),
      ].join('\n') + '\n';
      // Odd-sized pieces, one byte of a multi-byte character apart from the rest.
      const bytes = Buffer.from(text.replace('"b"', '"bé"'));
      const pieces = [7, 100, 1, 1, 300, 33];
      let at = 0;
      const next = (): void => {
        if (at >= bytes.length) {
          res.end();
          return;
        }
        const n = pieces[at % pieces.length] ?? 50;
        res.write(bytes.subarray(at, at + n));
        at += n;
        setImmediate(next);
      };
      next();
    };
    const events: NodeWatchEvent[] = [];
    const end = await client.watchNodes('10', (e) => events.push(e), new AbortController().signal);
    expect(url).to.equal('/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion=10&timeoutSeconds=300');
    expect(events.map((e) => (e.type === 'BOOKMARK' ? `BOOKMARK ${e.resourceVersion}` : `${e.type} ${e.node.metadata.name} ${e.node.metadata.resourceVersion}`)))
      .to.deep.equal(['ADDED a 11', 'MODIFIED a 12', 'BOOKMARK 15', 'DELETED a 16']);
    expect(events[0].type !== 'BOOKMARK' && events[0].node.metadata.annotations.a).to.equal('bé');
    expect(end).to.deep.equal({ reason: 'closed', resourceVersion: '16' });
  });

  it('rejects a watch with GoneError on an ERROR event with code 410, and on HTTP 410', async () => {
    handle = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ERROR', object: JSON.parse(status(410, 'Expired', 'too old resource version: 5 (80)')) })}\n`);
    };
    const err = await client.watchNodes('5', () => undefined, new AbortController().signal).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(GoneError);
    expect((err as Error).message).to.equal('the Kubernetes API refused to watch nodes: 410 Expired: too old resource version: 5 (80)');

    handle = (_req, res) => {
      res.writeHead(410);
      res.end(status(410, 'Gone', 'gone'));
    };
    expect(await client.watchNodes('5', () => undefined, new AbortController().signal).then(() => undefined, (e: unknown) => e)).to.be.instanceOf(GoneError);
  });

  it('resolves an aborted watch as aborted, before and after the answer', async () => {
    handle = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: node('a', '21') })}\n`);
    };
    const stop = new AbortController();
    const events: NodeWatchEvent[] = [];
    const watching = client.watchNodes('20', (e) => {
      events.push(e);
      stop.abort();
    }, stop.signal);
    expect(await watching).to.deep.equal({ reason: 'aborted', resourceVersion: '21' });
    const already = new AbortController();
    already.abort();
    expect(await client.watchNodes('20', () => undefined, already.signal)).to.deep.equal({ reason: 'aborted', resourceVersion: '20' });
  });

  it('closes a silent watch with KubeTimeoutError, and a listener\'s exception ends the watch with it', async () => {
    handle = (_req, res) => {
      res.writeHead(200);
      res.write('\n');
    };
    const err = await client.watchNodes('1', () => undefined, new AbortController().signal).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubeTimeoutError);
    expect((err as Error).message).to.match(/^cannot watch nodes at http:\/\/127\.0\.0\.1:\d+: no data after 500 ms$/);

    handle = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: node('a', '2') })}\n`);
    };
    const boom = new Error('listener failed');
    const thrown = await client.watchNodes('1', () => {
      throw boom;
    }, new AbortController().signal).then(() => undefined, (e: unknown) => e);
    expect(thrown).to.equal(boom);
  });

  it('times out a request the server never answers, and names an unreachable server', async () => {
    handle = () => undefined;
    const started = Date.now();
    const err = await client.getNode('slow').then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubeTimeoutError);
    expect(Date.now() - started).to.be.lessThan(2000);
    expect((err as Error).message).to.match(/^cannot get nodes "slow" at http:\/\/127\.0\.0\.1:\d+: no complete answer after 500 ms$/);

    // The deadline covers the body too: headers and half a body are not an answer.
    handle = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"kind":"Node",');
    };
    const stalled = await client.getNode('half').then(() => undefined, (e: unknown) => e);
    expect(stalled).to.be.instanceOf(KubeTimeoutError);
    expect((stalled as Error).message).to.include('get nodes "half"');

    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const nobody = new KubeClient(config(port));
    const refused = await nobody.listNodes().then(() => undefined, (e: unknown) => e);
    nobody.close();
    expect(refused).to.be.instanceOf(KubeConnectionError);
    expect((refused as Error).message).to.equal(`cannot list nodes at http://127.0.0.1:${port}: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:${port}`);
  });
});

describe('kube-apiserver harness', () => {
  it('finds the binary through $KUBE_APISERVER, else beside the repository, and says where it looked', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'twill-find-'));
    try {
      const bin = path.join(dir, 'kube-apiserver');
      writeFileSync(bin, '');
      expect(findKubeApiserver({ KUBE_APISERVER: bin }, '/nonexistent/shared')).to.deep.equal({ binary: bin, looked: [`$KUBE_APISERVER=${bin}`] });
      expect(findKubeApiserver({}, bin)).to.deep.equal({ binary: bin, looked: ['$KUBE_APISERVER (unset)', bin] });
      expect(findKubeApiserver({ KUBE_APISERVER: '/nonexistent/a' }, '/nonexistent/b'))
        .to.deep.equal({ looked: ['$KUBE_APISERVER=/nonexistent/a', '/nonexistent/b'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('flanneld annotation names', () => {
  it('are built from --kube-annotation-prefix as flanneld builds them', () => {
    expect(flannelAnnotations()).to.deep.equal({
      subnetKubeManaged: 'flannel.alpha.coreos.com/kube-subnet-manager',
      backendData: 'flannel.alpha.coreos.com/backend-data',
      backendV6Data: 'flannel.alpha.coreos.com/backend-v6-data',
      backendType: 'flannel.alpha.coreos.com/backend-type',
      publicIP: 'flannel.alpha.coreos.com/public-ip',
      publicIPv6: 'flannel.alpha.coreos.com/public-ipv6',
      publicIPOverwrite: 'flannel.alpha.coreos.com/public-ip-overwrite',
      publicIPv6Overwrite: 'flannel.alpha.coreos.com/public-ipv6-overwrite',
      nodePublicIP: 'flannel.alpha.coreos.com/node-public-ip',
      nodePublicIPv6: 'flannel.alpha.coreos.com/node-public-ipv6',
      twillBackends: 'flannel.alpha.coreos.com/twill-backends',
    });
    expect(flannelAnnotations('example.com/net').backendData).to.equal('example.com/net-backend-data');
    expect(flannelAnnotations('example.com/net-').backendData).to.equal('example.com/net-backend-data');
    expect(flannelAnnotations('example.com/').publicIP).to.equal('example.com/public-ip');
  });

  it('refuse a prefix flanneld refuses, saying why', () => {
    expect(() => flannelAnnotations('a.com/b/c')).to.throw(AnnotationPrefixError, 'may contain at most one "/"');
    expect(() => flannelAnnotations('localhost')).to.throw(AnnotationPrefixError, 'must be a lowercase DNS name');
    expect(() => flannelAnnotations('example.com/Net')).to.throw(AnnotationPrefixError, 'must be a lowercase DNS name');
    // Unanchored at the start in flanneld too: only the tail has to match.
    expect(flannelAnnotations('Foo.example.com').backendType).to.equal('Foo.example.com/backend-type');
  });
});
