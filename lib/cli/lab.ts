import type { Command } from 'commander';

/** `twill lab` — being written. */
export function registerLab(program: Command): void {
  program.command('lab').description('(not built yet)').action(() => {
    throw new Error('twill lab is not built yet');
  });
}
