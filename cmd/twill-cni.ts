#!/usr/bin/env node
/**
 * twill-cni — the CNI plugin for twilld's pod network: flannel's CNI plugin,
 * reading twilld's subnet.env and delegating to bridge + host-local
 * (lib/cni/plugin.ts). A runtime runs it with CNI_COMMAND and the network
 * config on stdin; it prints the result or a CNI error on stdout and exits
 * 0 or 1. It needs only Node.js and its own files (dist/cmd/twill-cni.js,
 * dist/lib/cni/, dist/lib/version.js), so it can be copied onto a host.
 */
import { readFileSync } from 'fs';
import { runPlugin } from '../lib/cni/plugin';
import { VERSION } from '../lib/version';

const about = `twill-cni ${VERSION}: CNI plugin for twill (CNI spec 1.0.0; delegates to bridge with host-local IPAM)`;

runPlugin(process.env, () => (process.env.CNI_COMMAND ? readFileSync(0, 'utf8') : ''), about).then(
  (out) => {
    if (out.stderr) process.stderr.write(out.stderr);
    process.stdout.write(out.stdout);
    process.exitCode = out.exitCode;
  },
  (err: Error) => {
    // runPlugin turns every failure into a CNI error; this is a bug.
    process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', code: 999, msg: `twill-cni: ${err.message}` }) + '\n');
    process.exitCode = 1;
  },
);
