/* A file's text as a JavaScript string backed by the file's pages (mapped-source.c). */
#ifndef TWILL_MAPPED_SOURCE_H
#define TWILL_MAPPED_SOURCE_H
#include <node_api.h>

/* Adds mapLatin1 and mapBytes to the addon's exports. */
void mapped_source_init(napi_env env, napi_value exports);

#endif
