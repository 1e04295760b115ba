/**
 * etcd calls of `twill migrate` with a deadline: a CLI must not hang on an
 * etcd that does not answer.
 */
import { EtcdAccessError, EtcdUnavailableError, translateEtcdError } from '../../subnet';

/** The first reads and the write give up after this, as `twill status` does. */
const ETCD_DEADLINE_MS = 3500;

/** An etcd call that gives up after ETCD_DEADLINE_MS, failing with an EtcdAccessError naming the endpoints. */
export async function bounded<T>(work: Promise<T>, endpoints: readonly string[]): Promise<T> {
  const where = endpoints.length === 1 ? `etcd at ${endpoints[0]}` : `etcd at one of ${endpoints.join(', ')}`;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EtcdUnavailableError(
      where, `did not answer within ${ETCD_DEADLINE_MS / 1000} s`, 'check --etcd-endpoints, and that etcd runs there and is reachable from here',
    )), ETCD_DEADLINE_MS);
  });
  try {
    return await Promise.race([work, late]);
  } catch (e) {
    const translated = translateEtcdError(e, { endpoints });
    if (translated instanceof EtcdAccessError) throw translated;
    throw new Error(`${where}: ${translated instanceof Error ? translated.message : String(translated)}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
}
