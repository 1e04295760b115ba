export { KubeClient, KubeClientOptions, NodeList, NodePatch, NodeWatchEvent, PatchType, WatchEnd } from './client';
export { KubeConfig, LoadKubeConfigOptions, SERVICE_ACCOUNT_DIR, inClusterConfig, loadKubeConfig, parseKubeconfig } from './kubeconfig';
export { KubeNode, NodeCondition } from './node';
export { KubeTransport, KubeRequest, TransportOptions, isAbortError } from './transport';
export {
  GoneError, KubeApiError, KubeConfigError, KubeConnectionError, KubeProtocolError, KubeRequestTarget, KubeTimeoutError,
} from './errors';
export { AnnotationPrefixError, DEFAULT_ANNOTATION_PREFIX, FlannelAnnotations, flannelAnnotations } from './annotations';
