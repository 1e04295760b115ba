/*
 * nftables commands run in twilld's own process through libnftables, the
 * library the `nft` command is a thin shell around.
 *
 * Why: the tunnel guard runs nft on the way from a new peer's lease to its
 * routes (admitting it first), and reads its counters at every repair. Each
 * run forked the daemon and executed nft, which then loaded its libraries:
 * a few milliseconds each, most of what a guarded lease put -> route took
 * beyond an unguarded one, and a short-lived process per repair.
 *
 * The library is opened with dlopen when first asked for, not linked: the
 * addon builds without its headers and loads without it, and twilld falls
 * back to executing `nft` where libnftables.so.1 is absent. It is closed
 * again once no command has been asked for IDLE_CLOSE_MS: with its
 * libraries (gmp, nftnl, xtables, jansson, mnl) it keeps ~1.6 MB resident,
 * and a settled agent runs one command per repair; opening it again costs
 * ~0.5 ms on the pool thread. Nothing of it outlives a dlclose (a test
 * program held the same memory after 4000 open/run/close cycles as after
 * 1000). Commands run
 * on libuv's thread pool, never on the event loop (listing a 5000-peer table
 * takes a while), one at a time, each on a fresh context, so nothing of a
 * table (nft's cache) stays in memory between them.
 *
 * API (main thread):
 *   nftAvailable(): string | null     null when the library can be used, else why not
 *   nftRun(json: boolean, commands: string, done: (error: string | null, output: string) => void)
 * `error` is nft's own message (what `nft` prints on stderr) when the
 * commands were refused; a refused script changes nothing (one transaction).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>
#include <uv.h>

#include "nft-library.h"

/* libnftables.h, the few declarations used (the ABI of libnftables.so.1). */
struct nft_ctx;
#define NFT_CTX_DEFAULT 0
#define NFT_CTX_OUTPUT_JSON (1u << 4)

static struct {
  struct nft_ctx *(*ctx_new)(uint32_t flags);
  void (*ctx_free)(struct nft_ctx *ctx);
  void (*output_set_flags)(struct nft_ctx *ctx, unsigned int flags);
  int (*buffer_output)(struct nft_ctx *ctx);
  int (*buffer_error)(struct nft_ctx *ctx);
  const char *(*output_buffer)(struct nft_ctx *ctx);
  const char *(*error_buffer)(struct nft_ctx *ctx);
  int (*run)(struct nft_ctx *ctx, const char *buf);
} lib;

static void *lib_handle;
/* 1 open, -1 cannot be opened (lib_error says why), 0 not open now. */
static int lib_loaded;
static char lib_error[512];
/* Main thread only: commands asked for and not yet answered, and the timer that closes the library after them. */
static unsigned pending;
static uv_timer_t idle_timer;
static int idle_timer_ready;
#define IDLE_CLOSE_MS 1000
/* One command at a time: libnftables's one-time set-up in its first context is not thread-safe. */
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;

/* Opens the library once; 0 when usable, else lib_error says why. */
static int load_library(void) {
  if (lib_loaded) return lib_loaded > 0 ? 0 : -1;
  void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    snprintf(lib_error, sizeof lib_error, "%s", why ? why : "libnftables.so.1 cannot be opened");
    lib_loaded = -1;
    return -1;
  }
  struct { void **slot; const char *name; } symbols[] = {
    { (void **)&lib.ctx_new, "nft_ctx_new" },
    { (void **)&lib.ctx_free, "nft_ctx_free" },
    { (void **)&lib.output_set_flags, "nft_ctx_output_set_flags" },
    { (void **)&lib.buffer_output, "nft_ctx_buffer_output" },
    { (void **)&lib.buffer_error, "nft_ctx_buffer_error" },
    { (void **)&lib.output_buffer, "nft_ctx_get_output_buffer" },
    { (void **)&lib.error_buffer, "nft_ctx_get_error_buffer" },
    { (void **)&lib.run, "nft_run_cmd_from_buffer" },
  };
  for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
    *symbols[i].slot = dlsym(h, symbols[i].name);
    if (!*symbols[i].slot) {
      snprintf(lib_error, sizeof lib_error, "libnftables.so.1 has no %s", symbols[i].name);
      dlclose(h);
      lib_loaded = -1;
      return -1;
    }
  }
  lib_handle = h;
  lib_loaded = 1;
  return 0;
}

/* No command is queued or running (pending is 0), so no pool thread is in the library. */
static void close_when_idle(uv_timer_t *timer) {
  if (pending > 0 || lib_loaded != 1) return;
  dlclose(lib_handle);
  lib_handle = NULL;
  memset(&lib, 0, sizeof lib);
  lib_loaded = 0;
}

static void arm_idle_close(napi_env env) {
  if (pending > 0 || lib_loaded != 1) return;
  if (!idle_timer_ready) {
    uv_loop_t *loop = NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop || uv_timer_init(loop, &idle_timer) != 0) return;
    /* The timer never keeps the process alive. */
    uv_unref((uv_handle_t *)&idle_timer);
    idle_timer_ready = 1;
  }
  uv_timer_start(&idle_timer, close_when_idle, IDLE_CLOSE_MS, 0);
}

typedef struct {
  napi_async_work work;
  napi_ref done;
  int json;
  char *commands;
  int failed;
  char *output;
  char *error;
} nft_call;

static char *copy_or_empty(const char *s) {
  return strdup(s ? s : "");
}

static void run_on_pool(napi_env env, void *data) {
  nft_call *c = data;
  pthread_mutex_lock(&run_lock);
  struct nft_ctx *ctx = lib.ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) {
    c->failed = 1;
    c->output = copy_or_empty(NULL);
    c->error = copy_or_empty("libnftables could not make a context (out of memory?)");
  } else {
    lib.output_set_flags(ctx, c->json ? NFT_CTX_OUTPUT_JSON : 0);
    lib.buffer_output(ctx);
    lib.buffer_error(ctx);
    c->failed = lib.run(ctx, c->commands) != 0;
    c->output = copy_or_empty(lib.output_buffer(ctx));
    c->error = copy_or_empty(lib.error_buffer(ctx));
    lib.ctx_free(ctx);
  }
  /*
   * nft builds a listing of thousands of elements in this pool thread's own
   * malloc arena, which glibc keeps once freed: tens of MB resident for
   * good after the first listing at 5000 peers. Give it back now.
   */
  malloc_trim(0);
  pthread_mutex_unlock(&run_lock);
}

static void after_run(napi_env env, napi_status status, void *data) {
  nft_call *c = data;
  napi_value done, global, argv[2];
  napi_get_reference_value(env, c->done, &done);
  napi_get_global(env, &global);
  if (status != napi_ok) {
    napi_create_string_utf8(env, "the nft call was cancelled", NAPI_AUTO_LENGTH, &argv[0]);
  } else if (c->failed) {
    napi_create_string_utf8(env, c->error && c->error[0] ? c->error : "nft refused the commands without a message", NAPI_AUTO_LENGTH, &argv[0]);
  } else if (!c->output) {
    napi_create_string_utf8(env, "out of memory copying nft's output", NAPI_AUTO_LENGTH, &argv[0]);
  } else {
    napi_get_null(env, &argv[0]);
  }
  napi_create_string_utf8(env, c->output ? c->output : "", NAPI_AUTO_LENGTH, &argv[1]);
  napi_delete_reference(env, c->done);
  napi_delete_async_work(env, c->work);
  free(c->commands);
  free(c->output);
  free(c->error);
  free(c);
  pending--;
  arm_idle_close(env);
  napi_value ignored;
  /* An exception thrown by `done` reaches Node's uncaught handler, as from any callback. */
  napi_call_function(env, global, done, 2, argv, &ignored);
}

static napi_value js_available(napi_env env, napi_callback_info info) {
  napi_value result;
  if (load_library() == 0) napi_get_null(env, &result);
  else napi_create_string_utf8(env, lib_error, NAPI_AUTO_LENGTH, &result);
  arm_idle_close(env);
  return result;
}

static napi_value js_run(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype type;
  if (argc < 3 || napi_typeof(env, argv[2], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "nftRun(json, commands, done)");
    return NULL;
  }
  if (load_library() != 0) {
    napi_throw_error(env, NULL, lib_error);
    return NULL;
  }
  bool json = false;
  napi_get_value_bool(env, argv[0], &json);
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "nftRun: commands must be a string");
    return NULL;
  }
  nft_call *c = calloc(1, sizeof *c);
  char *commands = malloc(len + 1);
  if (!c || !commands) {
    free(c);
    free(commands);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[1], commands, len + 1, &len);
  c->json = json;
  c->commands = commands;
  napi_create_reference(env, argv[2], 1, &c->done);
  napi_value name;
  napi_create_string_utf8(env, "twill:nft", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, run_on_pool, after_run, c, &c->work);
  if (idle_timer_ready) uv_timer_stop(&idle_timer);
  pending++;
  napi_queue_async_work(env, c->work);
  return NULL;
}

void nft_library_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "nftAvailable", NULL, js_available, NULL, NULL, NULL, napi_default, NULL },
    { "nftRun", NULL, js_run, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
