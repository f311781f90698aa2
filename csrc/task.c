/* task.c: the task model. Decodes a task (or a list of tasks) with json.c, then checks the types of
 * the fields waiting relies on (taskId, status, links) and normalises the shapes the API is known
 * to send:
 *   links array [{rel,href,type,title}] or HAL _links {rel = {...}} -> links map rel -> entry;
 *   response.error "TYPE" -> {type = "TYPE"}.
 * Every other field is kept as decoded, whatever its type. Bad input returns nil, msg; only misuse
 * raises.
 * A decoded JSON object never has integer keys, so "table whose [1] is nil" tells an object from a
 * non-empty array; an empty table is accepted as either. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rctasks.h"

/* ===== FIELD NAMES =====
 * Interned once as upvalues: pushing an upvalue copies a reference, pushing a literal rehashes it. */

enum {
    K_TASKID, K_STATUS, K_RESPONSE, K_LINKS, K_HAL_LINKS, K_ERROR, K_REL, K_HREF, K_TYPE, K_TASKS, K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "taskId", "status", "response", "links", "_links", "error", "rel", "href", "type", "tasks",
};

#define KEY(k) lua_upvalueindex((k) + 1)

/* Push t[key] (raw) and return its Lua type. */
static int get_key(lua_State *L, int t, int k)
{
    lua_pushvalue(L, KEY(k));
#if LUA_VERSION_NUM >= 503
    return lua_rawget(L, t);
#else
    lua_rawget(L, t);
    return lua_type(L, -1);
#endif
}

/* ===== ERRORS ===== */

typedef struct {
    char *buf;
    size_t len;
    int index;      /* position in a list (1-based), 0 for a single task */
    const char *id; /* taskId once known, else NULL */
    size_t idlen;
} rc_where;

/* A server string is quoted in a message only whole and only this short: a cut piece of an echoed
 * key is a prefix that redaction (which matches whole keys) cannot recognise. */
#define SHOWN_MAX 64

typedef struct {
    char text[SHOWN_MAX + 48];
} rc_shown;

/* s as a message shows it: itself when short and free of control bytes (NUL included, so it is
 * whole and the message stays one line), else a description: "<a name of 300 bytes>". */
static const char *show(rc_shown *out, const char *s, size_t len, const char *what)
{
    size_t i;
    int clean = 1;
    for (i = 0; i < len && clean; i++)
        clean = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f;
    if (len > SHOWN_MAX)
        snprintf(out->text, sizeof out->text, "<%s of %lu bytes>", what, (unsigned long)len);
    else if (!clean)
        snprintf(out->text, sizeof out->text, "<%s with control characters>", what);
    else
        snprintf(out->text, sizeof out->text, "%.*s", (int)len, s);
    return out->text;
}

/* Write "<where>: <message>" and return 0, the failure code of the checkers. */
static int fail(rc_where *w, const char *fmt, ...)
{
    va_list ap;
    int n;
    rc_shown id;
    if (w->index > 0 && w->id != NULL)
        n = snprintf(w->buf, w->len, "tasks[%d] (task %s): ", w->index, show(&id, w->id, w->idlen, "an id"));
    else if (w->index > 0)
        n = snprintf(w->buf, w->len, "tasks[%d]: ", w->index);
    else if (w->id != NULL)
        n = snprintf(w->buf, w->len, "task %s: ", show(&id, w->id, w->idlen, "an id"));
    else
        n = snprintf(w->buf, w->len, "task: ");
    if (n < 0 || (size_t)n >= w->len)
        return 0;
    va_start(ap, fmt);
    vsnprintf(w->buf + n, w->len - (size_t)n, fmt, ap);
    va_end(ap);
    return 0;
}

static int is_object(lua_State *L, int i)
{
    int obj;
    if (lua_type(L, i) != LUA_TTABLE)
        return 0;
    lua_rawgeti(L, i, 1);
    obj = lua_isnil(L, -1);
    lua_pop(L, 1);
    return obj;
}

/* A non-empty array, or an empty table (JSON [] and {} decode alike). i must be absolute. */
static int is_array(lua_State *L, int i)
{
    if (lua_type(L, i) != LUA_TTABLE)
        return 0;
    if (!is_object(L, i))
        return 1;
    lua_pushnil(L);
    if (lua_next(L, i) == 0)
        return 1;
    lua_pop(L, 2);
    return 0;
}

/* The JSON name of a decoded value's type, for messages. */
static const char *json_type(lua_State *L, int i)
{
    switch (lua_type(L, i)) {
    case LUA_TTABLE:
        if (!is_object(L, i))
            return "array";
        lua_pushnil(L);
        if (lua_next(L, i < 0 ? i - 1 : i) == 0)
            return "empty object or array"; /* [] and {} decode alike */
        lua_pop(L, 2);
        return "object";
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, i) == NULL ? "null" : "userdata";
    default:
        return luaL_typename(L, i);
    }
}

/* ===== FIELD CHECKS ===== */

/* response.error as a plain string (what the spec declares) becomes {type = str}; every other
 * field of the response, and an error of any other shape, stays as the server sent it: the Lua
 * side reads them with type checks, so a field the library does not need can never fail a task. */
static void normalise_response(lua_State *L, int r)
{
    if (get_key(L, r, K_ERROR) == LUA_TSTRING) {
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, KEY(K_TYPE));
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);          /* {type = str} */
        lua_pushvalue(L, KEY(K_ERROR));
        lua_insert(L, -2);
        lua_rawset(L, r);           /* response.error = {type = str} */
    }
    lua_pop(L, 1);
}

/* A link entry's href must be a string when present (task:link() returns it). */
static int href_ok(lua_State *L, int e)
{
    int t = get_key(L, e, K_HREF);
    if (t != LUA_TNIL && t != LUA_TSTRING)
        return 0; /* leaves the bad value on top for the message */
    lua_pop(L, 1);
    return 1;
}

/* links array at li -> entries of map (at m) keyed by rel; entries without rel are skipped.
 * The entry tables themselves become the map values, so rel stays inside. */
static int links_from_array(lua_State *L, rc_where *w, int li, int m)
{
    int i, n = (int)rc_rawlen(L, li);
    for (i = 1; i <= n; i++) {
        int e, t;
        lua_rawgeti(L, li, i);
        e = lua_gettop(L);
        if (!is_object(L, e))
            return fail(w, "field 'links[%d]' must be an object, got %s", i, json_type(L, e));
        t = get_key(L, e, K_REL);
        if (t == LUA_TNIL) {
            lua_pop(L, 2);
            continue;
        }
        if (t != LUA_TSTRING)
            return fail(w, "field 'links[%d].rel' must be a string, got %s", i, json_type(L, -1));
        if (!href_ok(L, e))
            return fail(w, "field 'links[%d].href' must be a string, got %s", i, json_type(L, -1));
        lua_pushvalue(L, e);
        lua_rawset(L, m);  /* map[rel] = entry */
        lua_pop(L, 1);
    }
    return 1;
}

/* HAL _links object at hi -> map (at m), without overriding rels the array already gave. */
static int links_from_hal(lua_State *L, rc_where *w, int hi, int m)
{
    lua_pushnil(L);
    while (lua_next(L, hi) != 0) {
        int e = lua_gettop(L);
        rc_shown name;
        size_t nl;
        const char *k = lua_tolstring(L, e - 1, &nl); /* a JSON member name: always a string */
        if (!is_object(L, e))
            return fail(w, "field '_links.%s' must be an object, got %s", show(&name, k, nl, "a name"),
                        json_type(L, e));
        if (!href_ok(L, e))
            return fail(w, "field '_links.%s.href' must be a string, got %s", show(&name, k, nl, "a name"),
                        json_type(L, -1));
        lua_pushvalue(L, e - 1);
        lua_rawget(L, m);
        if (lua_isnil(L, -1)) {
            if (get_key(L, e, K_REL) == LUA_TNIL) { /* keep rel inside, like array entries */
                lua_pushvalue(L, KEY(K_REL));
                lua_pushvalue(L, e - 1);
                lua_rawset(L, e);
            }
            lua_pop(L, 1);
            lua_pushvalue(L, e - 1);
            lua_pushvalue(L, e);
            lua_rawset(L, m);
        }
        lua_pop(L, 2); /* lookup result, value: the key stays for lua_next */
    }
    return 1;
}

/* links / _links of task t -> one map in t.links; _links removed. */
static int normalise_links(lua_State *L, rc_where *w, int t)
{
    int top = lua_gettop(L), li = top + 1, hi = top + 2, m = top + 3;
    int lt = get_key(L, t, K_LINKS), ht = get_key(L, t, K_HAL_LINKS);
    if (lt == LUA_TNIL && ht == LUA_TNIL) {
        lua_settop(L, top);
        return 1;
    }
    if (lt != LUA_TNIL && !is_array(L, li))
        return fail(w, "field 'links' must be an array, got %s", json_type(L, li));
    if (ht != LUA_TNIL && !is_object(L, hi))
        return fail(w, "field '_links' must be an object, got %s", json_type(L, hi));
    lua_createtable(L, 0, 4);
    if (lt != LUA_TNIL && !links_from_array(L, w, li, m))
        return 0;
    if (ht != LUA_TNIL) {
        if (!links_from_hal(L, w, hi, m))
            return 0;
        lua_pushvalue(L, KEY(K_HAL_LINKS));
        lua_pushnil(L);
        lua_rawset(L, t);
    }
    lua_pushvalue(L, KEY(K_LINKS));
    lua_pushvalue(L, m);
    lua_rawset(L, t);
    lua_settop(L, top);
    return 1;
}

/* ===== TASKS ===== */

/* Check and normalise the task at index t (absolute) and set mt (absolute) on it. On failure the
 * message is in w->buf and the stack may hold extra values (callers reset it). */
static int normalise_task(lua_State *L, rc_where *w, int t, int mt)
{
    int top = lua_gettop(L), rt;
    if (!is_object(L, t))
        return fail(w, "expected an object, got %s", json_type(L, t));
    rt = get_key(L, t, K_TASKID);
    if (rt == LUA_TNIL)
        return fail(w, "missing field 'taskId'");
    if (rt != LUA_TSTRING)
        return fail(w, "field 'taskId' must be a string, got %s", json_type(L, -1));
    w->id = lua_tolstring(L, -1, &w->idlen); /* anchored by the task table */
    lua_pop(L, 1);
    rt = get_key(L, t, K_STATUS);
    if (rt == LUA_TNIL)
        return fail(w, "missing field 'status'");
    if (rt != LUA_TSTRING)
        return fail(w, "field 'status' must be a string, got %s", json_type(L, -1));
    lua_pop(L, 1);
    /* Strict on what waiting needs (taskId, status, links); the rest is kept whatever its type. */
    if (get_key(L, t, K_RESPONSE) == LUA_TTABLE && is_object(L, -1))
        normalise_response(L, lua_gettop(L));
    lua_settop(L, top);
    if (!normalise_links(L, w, t))
        return 0;
    lua_pushvalue(L, mt);
    lua_setmetatable(L, t);
    return 1;
}

static void check_mt(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_argerror(L, 1, lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 1)));
    if (lua_type(L, 2) != LUA_TTABLE)
        luaL_argerror(L, 2, lua_pushfstring(L, "metatable (table) expected, got %s", luaL_typename(L, 2)));
    lua_settop(L, 2);
}

static int fail_result(lua_State *L, const char *msg)
{
    lua_settop(L, 2);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* core.decode_task(json, mt) -> task | nil, msg */
static int task_decode_task(lua_State *L)
{
    char err[256];
    size_t len;
    const char *s;
    rc_where w;
    check_mt(L);
    s = lua_tolstring(L, 1, &len);
    if (!rc_json_decode(L, s, len, err, sizeof err))
        return fail_result(L, err);
    w.buf = err;
    w.len = sizeof err;
    w.index = 0;
    w.id = NULL;
    w.idlen = 0;
    if (!normalise_task(L, &w, 3, 2))
        return fail_result(L, err);
    lua_settop(L, 3);
    return 1;
}

/* core.decode_tasks(json, mt) -> array of tasks | nil, msg. Accepts {"tasks": [...]} (the spec)
 * and a bare array (what some clients assume); a missing or null "tasks" is an empty list. */
static int task_decode_tasks(lua_State *L)
{
    char err[256];
    size_t len;
    const char *s;
    int i, n, list;
    check_mt(L);
    s = lua_tolstring(L, 1, &len);
    if (!rc_json_decode(L, s, len, err, sizeof err))
        return fail_result(L, err);
    if (lua_type(L, 3) != LUA_TTABLE) {
        snprintf(err, sizeof err, "tasks: expected an object or an array, got %s", json_type(L, 3));
        return fail_result(L, err);
    }
    if (is_object(L, 3)) {
        int t = get_key(L, 3, K_TASKS);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            lua_newtable(L);
        } else if (!is_array(L, 4)) {
            snprintf(err, sizeof err, "field 'tasks' must be an array, got %s", json_type(L, 4));
            return fail_result(L, err);
        }
        lua_settop(L, 4);
    } else {
        lua_pushvalue(L, 3);
    }
    list = 4;
    n = (int)rc_rawlen(L, list);
    for (i = 1; i <= n; i++) {
        rc_where w;
        w.buf = err;
        w.len = sizeof err;
        w.index = i;
        w.id = NULL;
        w.idlen = 0;
        lua_rawgeti(L, list, i);
        if (!normalise_task(L, &w, 5, 2))
            return fail_result(L, err);
        lua_settop(L, 4);
    }
    return 1;
}

void rc_open_task(lua_State *L)
{
    int k;
    for (k = 0; k < K_COUNT; k++)
        lua_pushstring(L, key_names[k]);
    lua_pushcclosure(L, task_decode_task, K_COUNT);
    lua_setfield(L, -2, "decode_task");
    for (k = 0; k < K_COUNT; k++)
        lua_pushstring(L, key_names[k]);
    lua_pushcclosure(L, task_decode_tasks, K_COUNT);
    lua_setfield(L, -2, "decode_tasks");
}
