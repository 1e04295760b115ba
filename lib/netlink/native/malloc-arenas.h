/* How many malloc arenas twilld's threads share (malloc-arenas.c). */
#ifndef TWILL_MALLOC_ARENAS_H
#define TWILL_MALLOC_ARENAS_H
#include <node_api.h>

/* Adds limitMallocArenas to the addon's exports. */
void malloc_arenas_init(napi_env env, napi_value exports);

#endif
