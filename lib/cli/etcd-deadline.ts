/**
 * etcd calls of the CLI commands with a deadline: a command must not hang
 * on an etcd that does not answer, and says which endpoints it tried.
 */
import { EtcdAccessError, EtcdUnavailableError, translateEtcdError } from '../subnet/etcd';

/** How long `twill status` and `twill migrate` wait for etcd to answer one read or write. */
export const DEFAULT_DEADLINE_MS = 3500;

/** Rejects with an EtcdAccessError naming the endpoints when `work` fails or takes longer than `ms`. */
export async function withDeadline<T>(work: Promise<T>, ms: number, endpoints: readonly string[]): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EtcdUnavailableError(
      endpointPhrase(endpoints),
      `did not answer within ${ms / 1000} s`,
      'check --etcd-endpoints, and that etcd runs there and is reachable from here',
    )), ms);
  });
  try {
    return await Promise.race([work, late]);
  } catch (err) {
    const translated = translateEtcdError(err, { endpoints });
    if (translated instanceof EtcdAccessError) throw translated;
    throw new Error(`${endpointPhrase(endpoints)}: ${translated instanceof Error ? translated.message : String(translated)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** As etcd-errors.ts names them: "etcd at X", or "etcd at one of X, Y". */
function endpointPhrase(endpoints: readonly string[]): string {
  return endpoints.length === 1 ? `etcd at ${endpoints[0]}` : `etcd at one of ${endpoints.join(', ')}`;
}
