/*
 * Caps the number of glibc malloc arenas for the rest of the process's life.
 *
 * Why: glibc gives each thread that allocates its own arena (up to 8 per
 * core). twilld's helper threads (V8's four platform workers for
 * concurrent GC and compilation, libuv's pool for nftables and files)
 * allocate a little now and then, and each arena keeps a few hundred KB
 * touched for good: four of them held 1.6-2.2 MB of a settled ~63 MB agent,
 * paid on every node, for threads that are idle nearly all the time; with
 * the cap a settled agent holds ~1.2 MB less (bench/README.md).
 *
 * Called by the launcher before the daemon's code runs. glibc settles its
 * arena limit only when more than eight arenas exist, so the cap still
 * applies to every thread that makes its first allocation after this
 * call. The arena Node's first helper thread made during start-up stays,
 * so the threads share two.
 *
 * API: limitMallocArenas(n: number): boolean   false where mallopt refused
 */
#include <malloc.h>
#include <node_api.h>

#include "malloc-arenas.h"

static napi_value js_limit(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t n = 0;
  napi_value result;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  napi_get_boolean(env, mallopt(M_ARENA_MAX, n) == 1, &result);
  return result;
}

void malloc_arenas_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "limitMallocArenas", NULL, js_limit, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
