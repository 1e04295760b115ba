import type { Command } from 'commander';

/** `twill diagnose` — being written; see the operator-experience issue. */
export function registerDiagnose(program: Command): void {
  program.command('diagnose').description('(not built yet)').action(() => {
    throw new Error('twill diagnose is not built yet');
  });
}
