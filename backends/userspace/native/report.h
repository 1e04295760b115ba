/*
 * What the dataplane tells twilld, as JSON text (the engine info, counters,
 * errors): twilld parses it with JSON.parse, and the control path is far
 * from hot, so text costs nothing that matters and stays readable in a
 * capture of the socket. Each writer returns the length written (always
 * NUL-terminated, truncated to `len`).
 */
#ifndef TWILL_REPORT_H
#define TWILL_REPORT_H

#include <stddef.h>

#include "engine.h"

size_t report_info(char *out, size_t len, const struct engine_info *info);
size_t report_counters(char *out, size_t len, const struct engine *e);
/* {"code":"EBUSY","message":"..."} */
size_t report_error(char *out, size_t len, const char *code, const char *message);
/* A JSON string literal (quotes included) for `s`. */
size_t report_string(char *out, size_t len, const char *s);
/* The errno name twilld branches on (EPERM, EBUSY, ...); EIO for the rest. */
const char *errno_code(int e);

#endif
