/*
 * A file's text as a JavaScript string whose characters stay in the file's
 * pages (a V8 external string over a read-only mapping), for twilld's bundle.
 *
 * Why: V8 keeps a script's whole source for as long as the script lives,
 * to compile its functions lazily and to print stack traces. Read with
 * readFileSync, twilld's 1.8 MB bundle was a 1.8 MB string in the heap for
 * the life of every node's agent, the largest single object it held once
 * settled. Started from the code cache, V8 reads almost none of it: mapped,
 * only the pages it reads are resident, and they are the page cache's, not
 * the heap's.
 *
 * The bundle is ASCII (cmd/bundle-daemon.ts refuses to write it otherwise),
 * so its bytes are its Latin-1 characters. The build replaces it by rename,
 * never in place: a mapping of a file truncated under it would fault.
 *
 * node_api_create_external_string_latin1 is in Node from 20.4 (still marked
 * experimental in its headers), so it is looked up when called: where it is
 * missing the caller reads the file instead.
 *
 * The code cache the launcher hands V8 is mapped too (mapBytes), for time
 * rather than memory: read into a fresh buffer, each of its ~430 pages is a
 * page fault of its own (7-8 ms for 1.7 MB on the CI machine, a quarter of
 * a bare Node's start), where MAP_POPULATE maps the page cache's pages in
 * the one call (0.3 ms). The cache is also replaced only by rename.
 *
 * API: mapLatin1(path: string): string | null   null when it cannot be mapped
 *      mapBytes(fd: number): Buffer | null      the open file's bytes; null when it cannot be mapped
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>

#include "mapped-source.h"

typedef void (*basic_finalize)(napi_env env, void *data, void *hint);
typedef napi_status (*create_external_latin1)(napi_env env, char *str, size_t length, basic_finalize finalize,
                                              void *hint, napi_value *result, bool *copied);

static void unmap(napi_env env, void *data, void *hint) {
  munmap(data, (size_t)(uintptr_t)hint);
}

static napi_value js_map_latin1(napi_env env, napi_callback_info info) {
  napi_value nothing;
  napi_get_null(env, &nothing);
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) return nothing;

  create_external_latin1 create = (create_external_latin1)dlsym(RTLD_DEFAULT, "node_api_create_external_string_latin1");
  if (!create) return nothing;

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nothing;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) { close(fd); return nothing; }
  size_t size = (size_t)st.st_size;
  void *text = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (text == MAP_FAILED) return nothing;

  napi_value result;
  bool copied = false;
  if (create(env, text, size, unmap, (void *)(uintptr_t)size, &result, &copied) != napi_ok) {
    munmap(text, size);
    return nothing;
  }
  /* Where V8 copies the text (a sandboxed build), Node has already called unmap: the copy is still the text. */
  return result;
}

static napi_value js_map_bytes(napi_env env, napi_callback_info info) {
  napi_value nothing;
  napi_get_null(env, &nothing);
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return nothing;

  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) return nothing;
  size_t size = (size_t)st.st_size;
  void *bytes = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (bytes == MAP_FAILED) return nothing;

  napi_value result;
  if (napi_create_external_buffer(env, size, bytes, unmap, (void *)(uintptr_t)size, &result) != napi_ok) {
    munmap(bytes, size);
    return nothing;
  }
  return result;
}

void mapped_source_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mapLatin1", NULL, js_map_latin1, NULL, NULL, NULL, napi_default, NULL },
    { "mapBytes", NULL, js_map_bytes, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
