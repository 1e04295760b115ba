#!/usr/bin/env node
/**
 * twill — the operator CLI: `lab` (a local cluster in network namespaces),
 * `status` (the cluster as etcd or the Kubernetes API holds it), `diagnose`
 * (this node's datapath), `migrate` (switch the cluster's backend and
 * follow the agents over).
 * Exit codes: 0 success, 1 the command failed, 2 bad usage.
 */
import { Command, CommanderError } from 'commander';
import { VERSION } from '../lib/version';
import { registerLab } from '../lib/cli/lab';
import { registerStatus } from '../lib/cli/status';
import { registerDiagnose } from '../lib/cli/diagnose';
import { registerMigrate } from '../lib/cli/migrate';

function build(): Command {
  const program = new Command('twill')
    .description('operate a twill (flannel-compatible) overlay network')
    .version(VERSION, '--version', 'print the version and exit')
    .showHelpAfterError()
    .exitOverride();
  registerLab(program);
  registerStatus(program);
  registerDiagnose(program);
  registerMigrate(program);
  return program;
}

async function main(): Promise<number> {
  const program = build();
  try {
    await program.parseAsync(process.argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (['commander.helpDisplayed', 'commander.version', 'commander.help', 'commander.executeSubCommandAsync'].includes(err.code)) return err.exitCode;
      return 2; // commander has printed the error and the usage
    }
    process.stderr.write(`twill: ${(err as Error).message}\n`);
    return 1;
  }
}

main().then((code) => {
  process.exitCode = code;
});
