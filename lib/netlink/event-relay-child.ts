/**
 * Child-process side of `subscribe()` (see event-relay.ts): opens the
 * notification socket, and forwards decoded events to the parent over IPC,
 * in batches. Started with the event groups as a JSON array in argv[2] and the receive
 * buffer size in argv[3] (0: default), and 'deletions' or 'all' in argv[4].
 * Exits when the parent disconnects.
 */
import { EventGroup, NetlinkEvent, openEventSocket } from './events';

/** Messages from the child to the parent. */
export type RelayMessage = { ready: true } | { events: NetlinkEvent[] } | { error: string };

function main(): void {
  const send = (m: RelayMessage): void => { process.send?.(m); };
  let groups: EventGroup[];
  try {
    groups = JSON.parse(process.argv[2] ?? '[]') as EventGroup[];
  } catch {
    send({ error: `bad group list ${process.argv[2]}` });
    process.exit(2);
  }
  let batch: NetlinkEvent[] = [];
  const flush = (): void => {
    const events = batch;
    batch = [];
    send({ events });
  };
  let unsubscribe: () => void;
  try {
    const recvBufferSize = Number(process.argv[3]) || undefined;
    unsubscribe = openEventSocket(groups, (event) => {
      if (batch.length === 0) setImmediate(flush);
      batch.push(event);
    }, { recvBufferSize, deletionsOnly: process.argv[4] === 'deletions' });
  } catch (err) {
    send({ error: (err as Error).message });
    process.exit(1);
  }
  process.on('disconnect', () => {
    unsubscribe();
    process.exit(0);
  });
  send({ ready: true });
}

if (require.main === module) main();
