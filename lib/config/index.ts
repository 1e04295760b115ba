/** The network config: its types and the parser that validates it and fills in defaults. */
export { parseNetworkConfig, setting } from './parse';
export * from './types';
