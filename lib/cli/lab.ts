/** `twill lab up|status|down|exec`: a local cluster in network namespaces (see lib/lab). */
import type { Command } from 'commander';
import { KNOWN_BACKEND_TYPES } from '../../backends';
import { labDown, labExec, labStatus, labUp } from '../lab/lab';

const say = (line: string): void => {
  process.stdout.write(line + '\n');
};

export function registerLab(program: Command): void {
  const lab = program.command('lab').description('a local twill cluster in network namespaces (needs root)');
  lab
    .command('up')
    .description('start etcd, N nodes running twilld and one pod each; print the connectivity matrix')
    .option('--nodes <n>', 'number of nodes', '3')
    .option('--backend <type>', `backend (${KNOWN_BACKEND_TYPES.join(', ')})`, 'vxlan')
    .action(async (opts: { nodes: string; backend: string }) => {
      if (!KNOWN_BACKEND_TYPES.includes(opts.backend)) throw new Error(`--backend ${opts.backend} is not one of ${KNOWN_BACKEND_TYPES.join(', ')}`);
      const ok = await labUp({ nodes: Number(opts.nodes), backend: opts.backend, say });
      if (!ok) process.exitCode = 1;
    });
  lab
    .command('status')
    .description('show the lab\'s processes and measure the connectivity matrix again')
    .action(async () => {
      if (!(await labStatus(say))) process.exitCode = 1;
    });
  lab
    .command('down')
    .description('stop the lab\'s processes and remove its namespaces and devices (also after a crash)')
    .action(async () => {
      await labDown(say);
    });
  lab
    .command('exec <target> [command...]')
    .description('run a command in node<N> or pod<N>, e.g. twill lab exec node0 -- ip route')
    .action(async (target: string, command: string[]) => {
      process.exitCode = await labExec(target, command ?? []);
    });
}
