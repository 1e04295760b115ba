import { expect } from 'chai';
import { spawn } from 'child_process';
import { once } from 'events';
import { readFileSync } from 'fs';
import { commandName, running } from '../../lib/process-state';

function stateOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.charAt(stat.lastIndexOf(')') + 2);
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('whether a process still runs', () => {
  it('this process runs and has a command name; a reaped child and a PID that cannot exist do not', async () => {
    expect(running(process.pid)).to.equal(true);
    expect(commandName(process.pid)).to.be.a('string').and.not.equal('');
    const child = spawn('true');
    await once(child, 'exit');
    expect(running(child.pid!)).to.equal(false);
    expect(running(0)).to.equal(false);
    expect(running(-1)).to.equal(false);
  });

  // A multithreaded program killed (twill-dataplane, a Node process) can show its leader as a zombie while
  // its other threads still hold its sockets: counting it gone then lets a test or a successor see a socket
  // that still accepts connections.
  it('counts a zombie leader whose other threads still run as running, until the last thread ends', async function () {
    this.timeout(10000);
    // The main thread ends with pthread_exit; a second thread blocks on stdin until the test closes it.
    const program = [
      'import ctypes, sys, threading',
      'threading.Thread(target=sys.stdin.read).start()',
      'ctypes.CDLL(None).pthread_exit(None)',
    ].join('\n');
    const child = spawn('python3', ['-c', program], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = once(child, 'exit');
    try {
      await until('the leader to become a zombie', () => stateOf(child.pid!) === 'Z');
      expect(running(child.pid!)).to.equal(true);
    } finally {
      child.stdin!.end();
      await exited;
    }
    expect(running(child.pid!)).to.equal(false);
  });
});
