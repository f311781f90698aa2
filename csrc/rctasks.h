/* rctasks.h: what each C file of the core exposes to core.c, all of it hidden whatever flags the
 * build passes (LuaRocks passes no -fvisibility, and nginx loads many modules into one process):
 * luaopen_rctasks_core (core.c) is the one exported symbol (spec/16-exports_spec.lua checks). */
#ifndef RCTASKS_H
#define RCTASKS_H

#include <stddef.h>
#include "compat.h"

#define RCTASKS_VERSION "0.1.0"

/* After every system and Lua header: their declarations keep their own visibility. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10) /* ASCII only, whatever the locale */

/* json.c: decode s[0..len) and push the value. Objects drop null members; arrays keep them as
 * the null sentinel (lightuserdata NULL). On failure pushes nothing, writes a message naming the
 * byte position into err (always NUL-terminated) and returns 0. Never raises except on memory
 * exhaustion inside the Lua API itself. */
#define RC_JSON_MAX_DEPTH 128
int rc_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen);
void rc_open_json(lua_State *L);  /* adds decode, null to the table on top */

/* task.c: task-model normalisation (links, response.error, list shapes, type checks). */
void rc_open_task(lua_State *L);  /* adds decode_task, decode_tasks */

/* file.c: locks, appends and replaces for the file store. */
void rc_open_file(lua_State *L);

/* sha256.c: core.sha256(s) -> 64 hex digits. */
void rc_open_sha256(lua_State *L);

/* http.c: the libcurl client userdata. */
void rc_open_http(lua_State *L);  /* adds http (constructor), curl_version */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
