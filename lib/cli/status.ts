import type { Command } from 'commander';

/** `twill status` — being written; see the operator-experience issue. */
export function registerStatus(program: Command): void {
  program.command('status').description('(not built yet)').action(() => {
    throw new Error('twill status is not built yet');
  });
}
