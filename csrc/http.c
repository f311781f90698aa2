/* http.c: the libcurl client userdata behind core.http{...}.
 *
 * One client owns one reused easy handle (keep-alive across requests) and the two buffers its
 * callbacks fill. The callbacks only append bytes; they never call Lua, so no Lua error can
 * longjmp through libcurl. Every Lua error of h:request is raised before the per-request header
 * list exists or after it is freed. Failures of the transfer itself return nil, code, message,
 * sent: sent is false only when the request surely never left this process. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "rctasks.h"

#define HTTP_MT "rctasks.http"
#define HTTP_KEEP_BODY_CAP ((size_t)1 << 20) /* above this a body buffer is freed after use */
#define HTTP_MAX_METHOD 32
#define HTTP_MAX_TIMEOUT_MS 2147483647.0     /* curl takes a long; cap at 2^31-1 ms (~24 days) */
#define HTTP_MAX_REQ_HEADERS ((size_t)64 << 10) /* request header lines, all together */
#define HTTP_MAX_CACHED_URL ((size_t)8 << 10)   /* longer URLs are parsed anew each time */

/* A pre-parsed URL handle (CURLOPT_CURLU) spares libcurl a URL parse per request (~15k
 * instructions of ~80k, measured with callgrind): 7.63 and later. */
#if LIBCURL_VERSION_NUM >= 0x073f00
#define HTTP_USE_CURLU 1
#else
#define HTTP_USE_CURLU 0
#endif

/* CURLOPT_PREREQFUNCTION (7.80 and later) tells when a connection is ready and a request is about
 * to go out on it; without it a failure is only known unsent when the name did not resolve. */
#if LIBCURL_VERSION_NUM >= 0x075000
#define HTTP_HAVE_PREREQ 1
#else
#define HTTP_HAVE_PREREQ 0
#endif

enum { SCHEME_OTHER, SCHEME_HTTP, SCHEME_HTTPS };

/* Where on_header is in the response: a status line is due, or the lines of an interim (1xx)
 * block, of the final block, or after it (trailers, or a whole new response libcurl asked for). */
enum { HEAD_STATUS, HEAD_INTERIM, HEAD_FINAL, HEAD_AFTER };

/* ===== Buffers ===== */

typedef struct {
    char *data;
    size_t len, cap;
} rc_buf;

/* Append n bytes without exceeding limit. Returns 1, 0 when the limit would be passed, -1 on ENOMEM. */
static int buf_append(rc_buf *b, const char *p, size_t n, size_t limit)
{
    if (n > limit || b->len > limit - n)
        return 0;
    if (b->len + n > b->cap) {
        size_t need = b->len + n;
        size_t cap = b->cap ? b->cap : 4096;
        char *d;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > limit)
            cap = limit;
        d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 1;
}

static void buf_free(rc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ===== The client userdata ===== */

typedef struct {
    CURL *curl;                   /* NULL once closed */
    long timeout_ms;
    size_t max_body, max_header;  /* caps of the response body and of one header block */
    rc_buf body, head;
    /* Per-request state kept while it does not change (the common case: the same GET again). */
    rc_buf lines, prev_lines;     /* request header lines "name: value\0"..., this one and the cached */
    struct curl_slist *hlist;     /* built from prev_lines, set on the handle */
    int hlist_set;                /* hlist (possibly NULL) is what the handle holds */
    long set_timeout_ms;          /* CURLOPT_TIMEOUT_MS on the handle, -1 unknown */
    long set_fresh;               /* CURLOPT_FRESH_CONNECT on the handle, -1 unknown */
    long set_noproxy;             /* CURLOPT_PROXY is "" (1) or unset (0: the environment), -1 unknown */
    int scheme;                   /* of the URL set: SCHEME_HTTPS alone may use a proxy */
    int plain_get;                /* the handle is set for a bodiless GET */
#if HTTP_USE_CURLU
    CURLU *url;                   /* parsed form of url_text */
    rc_buf url_text;              /* empty: nothing valid cached */
#endif
    int body_over, head_over, oom, bad_status; /* set by callbacks, read after perform */
    int head_state;               /* HEAD_*: what on_header expects next */
    int head_lines;               /* header lines of the last block: the Lua map's size */
    int prereqs;                  /* connections made ready for this request (PREREQFUNCTION calls) */
    lua_Integer requests, connects;
    char errbuf[CURL_ERROR_SIZE];
} rc_http;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    rc_http *h = ud;
    int r = buf_append(&h->body, p, size * n, h->max_body);
    if (r == 1)
        return size * n;
    if (r == 0)
        h->body_over = 1;
    else
        h->oom = 1;
    return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
}

/* The status code of a status line "HTTP/<digit>[.<digit>] <3 digits>" followed by a space, CR or
 * LF, from 100 to 599 (as the cosocket transport reads it), or -1. Stricter than libcurl 7.88,
 * which reads "HTTP/1.1 200x" as a 200. */
static int status_code(const char *p, size_t n)
{
    size_t i = 6;
    if (n < 6 || memcmp(p, "HTTP/", 5) != 0 || !IS_DIGIT(p[5]))
        return -1;
    if (i < n && p[i] == '.') {
        if (i + 1 >= n || !IS_DIGIT(p[i + 1]))
            return -1;
        i += 2;
    }
    if (n - i < 5 || p[i] != ' ' || !IS_DIGIT(p[i + 1]) || !IS_DIGIT(p[i + 2]) || !IS_DIGIT(p[i + 3]))
        return -1;
    if (p[i + 4] != ' ' && p[i + 4] != '\r' && p[i + 4] != '\n')
        return -1;
    if (p[i + 1] < '1' || p[i + 1] > '5')
        return -1;
    return (p[i + 1] - '0') * 100 + (p[i + 2] - '0') * 10 + (p[i + 3] - '0');
}

/* libcurl hands over one whole line per call. Each header block starts with a status line that
 * must be well formed; the map keeps only the last block (after 1xx interim answers). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    rc_http *h = ud;
    size_t len = size * n;
    int r, blank = (len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n');
    /* After the final block, a line with a field name (no '/' in one) is a trailer. */
    if (h->head_state == HEAD_STATUS || (h->head_state == HEAD_AFTER && len >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
        int code = status_code(p, len);
        if (code < 0) {
            h->bad_status = 1;
            return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        h->head.len = 0;
        h->head_lines = 0;
        h->head_state = code >= 100 && code <= 199 ? HEAD_INTERIM : HEAD_FINAL;
    } else if (blank) {
        h->head_state = h->head_state == HEAD_INTERIM ? HEAD_STATUS : HEAD_AFTER;
    }
    r = buf_append(&h->head, p, len, h->max_header);
    if (r == 1) {
        h->head_lines++;
        return len;
    }
    if (r == 0)
        h->head_over = 1;
    else
        h->oom = 1;
    return 0;
}

#if HTTP_HAVE_PREREQ
/* Called each time a connection is ready for this request, just before it is sent: only counts. */
static int on_prereq(void *ud, char *remote_ip, char *local_ip, int remote_port, int local_port)
{
    (void)remote_ip;
    (void)local_ip;
    (void)remote_port;
    (void)local_port;
    ((rc_http *)ud)->prereqs++;
    return CURL_PREREQFUNC_OK;
}
#endif

/* May the failed request have reached the server? "No" only when no connection was ever ready
 * for it: a hidden resend's failed connect must not hide the first send. */
static int may_have_sent(const rc_http *h, CURLcode rc)
{
#if HTTP_HAVE_PREREQ
    (void)rc;
    return h->prereqs > 0;
#else
    (void)h;
    return rc != CURLE_COULDNT_RESOLVE_HOST && rc != CURLE_COULDNT_RESOLVE_PROXY;
#endif
}

/* Keep the body buffer's capacity for the next request, unless a rare huge body grew it. */
static void trim_body(rc_http *h)
{
    h->body.len = 0;
    if (h->body.cap > HTTP_KEEP_BODY_CAP)
        buf_free(&h->body);
}

static void http_release(rc_http *h)
{
    if (h->curl != NULL) {
        curl_easy_cleanup(h->curl);
        h->curl = NULL;
    }
    /* after the easy handle: it points at both */
    curl_slist_free_all(h->hlist);
    h->hlist = NULL;
#if HTTP_USE_CURLU
    if (h->url != NULL) {
        curl_url_cleanup(h->url);
        h->url = NULL;
    }
    buf_free(&h->url_text);
#endif
    buf_free(&h->body);
    buf_free(&h->head);
    buf_free(&h->lines);
    buf_free(&h->prev_lines);
}

static rc_http *check_open(lua_State *L)
{
    rc_http *h = luaL_checkudata(L, 1, HTTP_MT);
    if (h->curl == NULL)
        luaL_error(L, "rctasks.http: client is closed");
    return h;
}

/* ===== Error names ===== */

#define NAME(c) case c: return #c
static const char *curle_name(CURLcode c)
{
    switch (c) {
    NAME(CURLE_UNSUPPORTED_PROTOCOL); NAME(CURLE_FAILED_INIT); NAME(CURLE_URL_MALFORMAT);
    NAME(CURLE_COULDNT_RESOLVE_PROXY); NAME(CURLE_COULDNT_RESOLVE_HOST);
    NAME(CURLE_COULDNT_CONNECT); NAME(CURLE_WEIRD_SERVER_REPLY); NAME(CURLE_HTTP2);
    NAME(CURLE_PARTIAL_FILE); NAME(CURLE_WRITE_ERROR); NAME(CURLE_READ_ERROR);
    NAME(CURLE_OUT_OF_MEMORY); NAME(CURLE_OPERATION_TIMEDOUT); NAME(CURLE_SSL_CONNECT_ERROR);
    NAME(CURLE_ABORTED_BY_CALLBACK); NAME(CURLE_BAD_FUNCTION_ARGUMENT);
    NAME(CURLE_TOO_MANY_REDIRECTS); NAME(CURLE_GOT_NOTHING); NAME(CURLE_SSL_ENGINE_NOTFOUND);
    NAME(CURLE_SEND_ERROR); NAME(CURLE_RECV_ERROR); NAME(CURLE_SSL_CERTPROBLEM);
    NAME(CURLE_SSL_CIPHER); NAME(CURLE_PEER_FAILED_VERIFICATION);
    NAME(CURLE_BAD_CONTENT_ENCODING); NAME(CURLE_FILESIZE_EXCEEDED);
    NAME(CURLE_SEND_FAIL_REWIND); NAME(CURLE_SSL_CACERT_BADFILE); NAME(CURLE_SSL_SHUTDOWN_FAILED);
    NAME(CURLE_AGAIN); NAME(CURLE_SSL_CRL_BADFILE); NAME(CURLE_SSL_ISSUER_ERROR);
    NAME(CURLE_HTTP2_STREAM);
#if LIBCURL_VERSION_NUM >= 0x074900
    NAME(CURLE_PROXY);
#endif
#if LIBCURL_VERSION_NUM >= 0x074d00
    NAME(CURLE_SSL_CLIENTCERT);
#endif
#if LIBCURL_VERSION_NUM >= 0x075400
    NAME(CURLE_UNRECOVERABLE_POLL);
#endif
    default: return NULL;
    }
}
#undef NAME

/* Push nil, code, message, sent: the one failure tuple of this file. */
static int push_failure(lua_State *L, const char *code, const char *msg, int sent)
{
    lua_pushnil(L);
    lua_pushstring(L, code);
    lua_pushstring(L, msg);
    lua_pushboolean(L, sent);
    return 4;
}

static int push_curl_failure(lua_State *L, rc_http *h, CURLcode rc, int sent)
{
    char num[32];
    const char *name = curle_name(rc);
    if (name == NULL) {
        snprintf(num, sizeof num, "CURLE_%d", (int)rc);
        name = num;
    }
    /* errbuf holds curl's own text about the connection, never a request header. */
    return push_failure(L, name, h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc), sent);
}

/* ===== Options ===== */

static long seconds_to_ms(lua_State *L, lua_Number s, const char *what)
{
    lua_Number ms;
    if (!(s > 0)) /* also rejects NaN */
        luaL_error(L, "rctasks.http: %s must be a positive number of seconds", what);
    ms = s * 1000.0;
    if (ms >= HTTP_MAX_TIMEOUT_MS)
        return (long)HTTP_MAX_TIMEOUT_MS;
    /* Round up, and never to 0: curl reads 0 as "no timeout" (no libm ceil: nothing to link). */
    return (lua_Number)(long)ms < ms ? (long)ms + 1 : ((long)ms < 1 ? 1 : (long)ms);
}

typedef struct {
    long timeout_ms, connect_timeout_ms;
    size_t max_body, max_header;
    const char *ca_file, *user_agent;
} http_opts;

static const char *const option_names[] = {
    "timeout", "connect_timeout", "max_body", "max_header", "ca_file", "user_agent", NULL
};

/* A required number: the defaults live in lua/rctasks/defaults.lua, never here. */
static lua_Number opt_number(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1))
        luaL_error(L, "rctasks.http: option '%s' is missing", k);
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "rctasks.http: option '%s' must be a number", k);
    return lua_tonumber(L, -1);
}

/* A required byte count: a whole number from 1 to 2^53 (beyond that a double is no longer exact). */
static size_t opt_size(lua_State *L, int t, const char *k)
{
    lua_Number n = opt_number(L, t, k);
    if (!(n >= 1 && n <= 9007199254740992.0 && (lua_Number)(size_t)n == n))
        luaL_error(L, "rctasks.http: option '%s' must be a positive integer", k);
    return (size_t)n;
}

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "rctasks.http: option '%s' must be a string", k);
    return lua_tostring(L, -1); /* stays valid: the table holds the string */
}

/* Read and check the options table at index 1: raises on an unknown key, a wrong type or a
 * missing number. */
static void read_opts(lua_State *L, http_opts *o)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int i, known = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "rctasks.http: option names must be strings");
        for (i = 0; option_names[i] != NULL && !known; i++)
            known = strcmp(lua_tostring(L, -1), option_names[i]) == 0;
        if (!known)
            luaL_error(L, "rctasks.http: unknown option '%s'", lua_tostring(L, -1));
    }
    o->timeout_ms = seconds_to_ms(L, opt_number(L, 1, "timeout"), "timeout");
    o->connect_timeout_ms = seconds_to_ms(L, opt_number(L, 1, "connect_timeout"), "connect_timeout");
    o->max_body = opt_size(L, 1, "max_body");
    o->max_header = opt_size(L, 1, "max_header");
    o->ca_file = opt_string(L, 1, "ca_file");
    o->user_agent = opt_string(L, 1, "user_agent");
}

/* ===== Constructor ===== */

static int curl_ready = 0; /* curl_global_init is process-wide by nature: a static flag is right */

static CURLcode setup_handle(rc_http *h, const http_opts *o)
{
    char ua[128];
    CURLcode rc = CURLE_OK;
    CURL *c = h->curl;
    if (o->user_agent == NULL)
        snprintf(ua, sizeof ua, "rctasks/%s libcurl/%s", RCTASKS_VERSION,
                 curl_version_info(CURLVERSION_NOW)->version);
#define SET(opt, v) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, v)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file != NULL)
        SET(CURLOPT_CAINFO, o->ca_file);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
    SET(CURLOPT_USERAGENT, o->user_agent != NULL ? o->user_agent : ua);
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)h);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)h);
#if LIBCURL_VERSION_NUM >= 0x073600
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L); /* a proxy's CONNECT answer is not the response */
#endif
#if HTTP_HAVE_PREREQ
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)h);
#endif
#if HTTP_USE_CURLU
    SET(CURLOPT_CURLU, h->url);
#endif
#undef SET
    return rc;
}

/* core.http{...} -> client | nil, code, message, false (when libcurl cannot start). */
static int http_new(lua_State *L)
{
    http_opts o;
    rc_http *h;
    CURLcode rc;
    read_opts(L, &o);
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return push_failure(L, "CURLE_FAILED_INIT", "curl_global_init failed", 0);
        curl_ready = 1;
    }
    h = lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    luaL_getmetatable(L, HTTP_MT);
    lua_setmetatable(L, -2);
    h->timeout_ms = o.timeout_ms;
    h->max_body = o.max_body;
    h->max_header = o.max_header;
    h->set_timeout_ms = -1;
    h->set_fresh = h->set_noproxy = -1;
    h->curl = curl_easy_init();
#if HTTP_USE_CURLU
    h->url = curl_url();
    if (h->url == NULL) {
        http_release(h);
        return push_failure(L, "ENOMEM", "out of memory", 0);
    }
#endif
    if (h->curl == NULL)
        return push_failure(L, "ENOMEM", "out of memory", 0);
    rc = setup_handle(h, &o);
    if (rc != CURLE_OK) {
        int n = rc == CURLE_OUT_OF_MEMORY ? push_failure(L, "ENOMEM", "out of memory", 0)
                                          : push_curl_failure(L, h, rc, 0);
        http_release(h);
        return n;
    }
    return 1;
}

/* ===== Request ===== */

/* RFC 9110 token characters: what a method or header name may contain. */
static int is_token(const char *s, size_t n)
{
    size_t i;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int alnum = (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
        if (!(alnum || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
            return 0;
    }
    return 1;
}

/* Check the headers map at index t (raises on a malformed one) and write its lines into
 * h->lines as "Name: value\0" ("Name;\0" for an empty value: curl's spelling, "Name:" deletes).
 * Raising here leaks nothing: the buffer belongs to the client. Returns 0 on ENOMEM. */
static int collect_headers(lua_State *L, rc_http *h, int t, int has_body)
{
    int has_expect = 0;
    h->lines.len = 0;
    if (t != 0) {
        lua_pushnil(L);
        while (lua_next(L, t) != 0) {
            size_t nl, vl;
            const char *name, *v;
            int r;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "rctasks.http: headers must map string names to string values");
            name = lua_tolstring(L, -2, &nl);
            v = lua_tolstring(L, -1, &vl);
            if (!is_token(name, nl))
                luaL_error(L, "rctasks.http: invalid header name");
            /* The value is never echoed: it may be an API key. */
            if (memchr(v, '\r', vl) != NULL || memchr(v, '\n', vl) != NULL || memchr(v, '\0', vl) != NULL)
                luaL_error(L, "rctasks.http: header '%s' value contains CR, LF or NUL", name);
            r = buf_append(&h->lines, name, nl, HTTP_MAX_REQ_HEADERS);
            if (r == 1)
                r = vl == 0 ? buf_append(&h->lines, ";", 2, HTTP_MAX_REQ_HEADERS)
                            : buf_append(&h->lines, ": ", 2, HTTP_MAX_REQ_HEADERS);
            if (r == 1 && vl > 0)
                r = buf_append(&h->lines, v, vl + 1, HTTP_MAX_REQ_HEADERS); /* with its NUL */
            if (r == 0)
                luaL_error(L, "rctasks.http: request headers larger than %d bytes", (int)HTTP_MAX_REQ_HEADERS);
            if (r < 0) {
                lua_pop(L, 2);
                return 0;
            }
            if (nl == 6 && strncasecmp(name, "expect", 6) == 0)
                has_expect = 1;
            lua_pop(L, 1);
        }
    }
    /* No "Expect: 100-continue" stall on bodies unless the caller asked for it. */
    if (has_body && !has_expect && buf_append(&h->lines, "Expect:", 8, HTTP_MAX_REQ_HEADERS + 8) < 0)
        return 0;
    return 1;
}

/* Put h->lines on the handle, rebuilding the curl list only when they changed since the last
 * request (the same GET again reuses it). Never raises. Returns 0 on ENOMEM (nothing changed). */
static int apply_headers(rc_http *h)
{
    struct curl_slist *list = NULL, *next;
    const char *p = h->lines.data, *end = p != NULL ? p + h->lines.len : p; /* NULL + 0 is UB */
    rc_buf tmp;
    if (h->hlist_set && h->lines.len == h->prev_lines.len &&
        (h->lines.len == 0 || memcmp(h->lines.data, h->prev_lines.data, h->lines.len) == 0))
        return 1;
    while (p < end) {
        next = curl_slist_append(list, p);
        if (next == NULL) {
            curl_slist_free_all(list);
            return 0;
        }
        list = next;
        p += strlen(p) + 1;
    }
    if (curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, list) != CURLE_OK) {
        curl_slist_free_all(list);
        return 0;
    }
    curl_slist_free_all(h->hlist); /* the handle no longer points at it */
    h->hlist = list;
    h->hlist_set = 1;
    tmp = h->prev_lines; /* the lines become the cache key; the old key's memory is reused */
    h->prev_lines = h->lines;
    h->lines = tmp;
    return 1;
}

/* Set the verb and body; a request leaves no verb or body state behind for the next one.
 * A bodiless GET after another one needs no option at all. */
static CURLcode set_method(rc_http *h, const char *method, const char *body, size_t blen)
{
    CURLcode rc = CURLE_OK;
    CURL *c = h->curl;
    int is_get = strcmp(method, "GET") == 0, is_head = strcmp(method, "HEAD") == 0;
    if (is_get && body == NULL && h->plain_get)
        return CURLE_OK;
    h->plain_get = 0;
#define SET(opt, v) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, v)
    SET(CURLOPT_POSTFIELDS, (char *)NULL);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    SET(CURLOPT_HTTPGET, 1L); /* resets POST, upload and nobody */
    if (is_head)
        SET(CURLOPT_NOBODY, 1L);
    if (body == NULL && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                         strcmp(method, "PATCH") == 0)) {
        body = ""; /* sends Content-Length: 0, which servers expect on a bodiless POST */
        blen = 0;
    }
    if (body != NULL) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        SET(CURLOPT_POSTFIELDS, body); /* the Lua string stays on the stack during perform */
    }
    if ((!is_get && !is_head) || body != NULL)
        SET(CURLOPT_CUSTOMREQUEST, method); /* POSTFIELDS alone would turn a GET into a POST */
#undef SET
    h->plain_get = rc == CURLE_OK && is_get && body == NULL;
    return rc;
}

/* Push the final header block as a map with lower-cased names; repeated names joined by ", ". */
static void push_headers(lua_State *L, const char *p, size_t n, int lines)
{
    const char *end = p + n;
    int first = 1;
    /* Sized once for every line (status and blank line included): no rehash while it fills. */
    lua_createtable(L, 0, lines > 64 ? 64 : lines);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line = p, *colon, *v, *ve;
        if (eol == NULL)
            eol = end;
        p = eol < end ? eol + 1 : end;
        ve = eol;
        if (ve > line && ve[-1] == '\r')
            ve--;
        if (first) { /* the status line */
            first = 0;
            continue;
        }
        colon = memchr(line, ':', (size_t)(ve - line));
        if (colon == NULL || colon == line)
            continue;
        {
            char lower[64]; /* header names are short; a longer one goes through a Lua buffer */
            size_t i, nl = (size_t)(colon - line);
            int tbl = lua_gettop(L);
            if (nl <= sizeof lower) {
                for (i = 0; i < nl; i++)
                    lower[i] = (line[i] >= 'A' && line[i] <= 'Z') ? (char)(line[i] + ('a' - 'A')) : line[i];
                lua_pushlstring(L, lower, nl);
            } else {
                luaL_Buffer b;
                luaL_buffinit(L, &b);
                for (i = 0; i < nl; i++)
                    luaL_addchar(&b, (line[i] >= 'A' && line[i] <= 'Z') ? (char)(line[i] + ('a' - 'A')) : line[i]);
                luaL_pushresult(&b);
            }
            for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++)
                ;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            lua_pushvalue(L, -1);
            lua_rawget(L, tbl);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
            } else {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_concat(L, 3);
            }
            lua_rawset(L, tbl);
        }
    }
}

#if HTTP_USE_CURLU
/* The parsed URL's SCHEME_*. Out of memory answers SCHEME_OTHER: no proxy is the side on which
 * no key travels in clear. */
static int parsed_scheme(CURLU *u)
{
    char *name = NULL;
    int scheme = SCHEME_OTHER;
    if (curl_url_get(u, CURLUPART_SCHEME, &name, 0) == CURLUE_OK && name != NULL)
        scheme = strcasecmp(name, "https") == 0 ? SCHEME_HTTPS
               : strcasecmp(name, "http") == 0 ? SCHEME_HTTP : SCHEME_OTHER;
    curl_free(name);
    return scheme;
}
#endif

/* Point the handle at url and note whether it is https. With CURLU the parse is done once per
 * distinct URL and kept; a malformed URL leaves curl's words in h->errbuf and returns
 * CURLE_URL_MALFORMAT (or CURLE_UNSUPPORTED_PROTOCOL), as the transfer itself would have. */
static CURLcode set_url(rc_http *h, const char *url, size_t ulen)
{
#if HTTP_USE_CURLU
    CURLUcode uc;
    if (h->url_text.len == ulen + 1 && memcmp(h->url_text.data, url, ulen + 1) == 0)
        return CURLE_OK;
    h->url_text.len = 0; /* invalid until the parse succeeds */
    curl_url_set(h->url, CURLUPART_URL, NULL, 0); /* else a relative URL resolves against the last one */
    /* The flags libcurl itself parses CURLOPT_URL with. */
    uc = curl_url_set(h->url, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME);
    if (uc == CURLUE_OK) {
        h->scheme = parsed_scheme(h->url);
        if (ulen + 1 <= HTTP_MAX_CACHED_URL && buf_append(&h->url_text, url, ulen + 1, HTTP_MAX_CACHED_URL) != 1)
            h->url_text.len = 0;
        return CURLE_OK;
    }
    if (uc == CURLUE_OUT_OF_MEMORY)
        return CURLE_OUT_OF_MEMORY;
#if LIBCURL_VERSION_NUM >= 0x075000
    snprintf(h->errbuf, sizeof h->errbuf, "%s", curl_url_strerror(uc));
#else
    snprintf(h->errbuf, sizeof h->errbuf, "malformed URL (CURLUcode %d)", (int)uc);
#endif
    return uc == CURLUE_UNSUPPORTED_SCHEME ? CURLE_UNSUPPORTED_PROTOCOL : CURLE_URL_MALFORMAT;
#else
    /* No "://": libcurl guesses http for every host name a request can use here. */
    h->scheme = ulen >= 8 && strncasecmp(url, "https://", 8) == 0 ? SCHEME_HTTPS
              : (ulen >= 7 && strncasecmp(url, "http://", 7) == 0) || strstr(url, "://") == NULL ? SCHEME_HTTP
              : SCHEME_OTHER;
    return curl_easy_setopt(h->curl, CURLOPT_URL, url);
#endif
}

/* Set a long option only when it differs from what the handle holds (*held; -1: unknown). */
static CURLcode set_long(CURL *c, CURLoption opt, long v, long *held)
{
    CURLcode rc;
    if (v == *held)
        return CURLE_OK;
    rc = curl_easy_setopt(c, opt, v);
    *held = rc == CURLE_OK ? v : -1;
    return rc;
}

/* A proxy (from http_proxy, ALL_PROXY, ...) would read an http:// request, API keys included, in
 * clear: only https goes through one, as a CONNECT tunnel with TLS verified end to end. */
static CURLcode set_proxy(rc_http *h)
{
    CURLcode rc;
    long noproxy = h->scheme != SCHEME_HTTPS ? 1L : 0L;
    if (noproxy == h->set_noproxy)
        return CURLE_OK;
    rc = curl_easy_setopt(h->curl, CURLOPT_PROXY, noproxy ? "" : (char *)NULL);
    h->set_noproxy = rc == CURLE_OK ? noproxy : -1;
    return rc;
}

/* RFC 9110 section 9.2.2: a request the server may safely receive twice. libcurl silently resends
 * a request whose reused connection drops before any answer; any other method gets a fresh
 * connection, on which libcurl never resends. */
static int is_idempotent(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "PUT") == 0 ||
           strcmp(m, "DELETE") == 0 || strcmp(m, "OPTIONS") == 0;
}

/* h:request(method, url, headers|nil, body|nil, timeout|nil)
 *   -> status, headers, body | nil, code, message, sent */
static int http_request(lua_State *L)
{
    rc_http *h = check_open(L);
    size_t mlen, ulen, blen = 0;
    const char *method, *url, *body = NULL;
    int htab = 0, sent = 0;
    long timeout_ms = h->timeout_ms, status = 0, conns = 0;
    CURLcode rc;

    /* Strings only: a number coerced to a method or URL is a caller's bug, not a request. */
    luaL_checktype(L, 2, LUA_TSTRING);
    luaL_checktype(L, 3, LUA_TSTRING);
    method = lua_tolstring(L, 2, &mlen);
    url = lua_tolstring(L, 3, &ulen);
    if (mlen > HTTP_MAX_METHOD || !is_token(method, mlen))
        return luaL_argerror(L, 2, "invalid HTTP method");
    if (memchr(url, '\0', ulen) != NULL) /* libcurl reads a C string: the rest would vanish */
        return luaL_argerror(L, 3, "URL contains NUL");
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        htab = 4;
    }
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TSTRING);
        body = lua_tolstring(L, 5, &blen);
    }
    if (!lua_isnoneornil(L, 6))
        timeout_ms = seconds_to_ms(L, luaL_checknumber(L, 6), "timeout");
    lua_settop(L, 6);
    /* Raises on a bad map; its scratch buffer is the client's, so nothing leaks. */
    if (!collect_headers(L, h, htab, body != NULL))
        return push_failure(L, "ENOMEM", "out of memory", 0);

    /* From here on nothing raises. Options that did not change since the last request stay set. */
    h->body.len = h->head.len = 0;
    h->body_over = h->head_over = h->oom = h->bad_status = h->head_lines = h->prereqs = 0;
    h->head_state = HEAD_STATUS;
    h->errbuf[0] = '\0';
    if (!apply_headers(h))
        return push_failure(L, "ENOMEM", "out of memory", 0);
    rc = set_url(h, url, ulen);
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
        return push_failure(L, curle_name(rc), h->errbuf, 0);
    if (rc == CURLE_OK)
        rc = set_method(h, method, body, blen);
    if (rc == CURLE_OK)
        rc = set_long(h->curl, CURLOPT_TIMEOUT_MS, timeout_ms, &h->set_timeout_ms);
    if (rc == CURLE_OK)
        rc = set_long(h->curl, CURLOPT_FRESH_CONNECT, is_idempotent(method) ? 0L : 1L, &h->set_fresh);
    if (rc == CURLE_OK)
        rc = set_proxy(h);
    if (rc == CURLE_OK) {
        rc = curl_easy_perform(h->curl);
        sent = rc != CURLE_OK && may_have_sent(h, rc);
        h->requests++;
        if (curl_easy_getinfo(h->curl, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK)
            h->connects += conns;
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    }
    if (body != NULL)
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, (char *)NULL); /* drop the pointer into Lua */
    if (rc != CURLE_OK || h->oom || h->body_over || h->head_over)
        trim_body(h); /* a failed transfer's partial body is never needed */

    if (h->oom || rc == CURLE_OUT_OF_MEMORY)
        return push_failure(L, "ENOMEM", "out of memory", sent || h->oom);
    if (h->body_over || rc == CURLE_FILESIZE_EXCEEDED) {
        char msg[96];
        snprintf(msg, sizeof msg, "response body larger than %lu bytes", (unsigned long)h->max_body);
        return push_failure(L, "CURLE_FILESIZE_EXCEEDED", msg, 1);
    }
    /* libcurl itself refuses some status lines ("HTTP/1.1 20", no status line at all) as an
     * unsupported protocol: after an http(s) request went out, that too is the reply's fault. */
    if (h->bad_status || (rc == CURLE_UNSUPPORTED_PROTOCOL && h->scheme != SCHEME_OTHER && sent))
        return push_failure(L, "CURLE_WEIRD_SERVER_REPLY", "malformed status line", 1);
    if (h->head_over) {
        char msg[96];
        snprintf(msg, sizeof msg, "response headers larger than %lu bytes",
                 (unsigned long)h->max_header);
        return push_failure(L, "CURLE_FILESIZE_EXCEEDED", msg, 1);
    }
    if (rc != CURLE_OK)
        return push_curl_failure(L, h, rc, sent);

    lua_pushinteger(L, (lua_Integer)status);
    push_headers(L, h->head.data, h->head.len, h->head_lines);
    lua_pushlstring(L, h->body.data ? h->body.data : "", h->body.len);
    trim_body(h);
    return 3;
}

/* ===== Other methods ===== */

static int http_stats(lua_State *L)
{
    rc_http *h = luaL_checkudata(L, 1, HTTP_MT);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, h->requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, h->connects);
    lua_setfield(L, -2, "connects");
    return 1;
}

static int http_close(lua_State *L)
{
    http_release(luaL_checkudata(L, 1, HTTP_MT));
    return 0;
}

static int http_tostring(lua_State *L)
{
    rc_http *h = luaL_checkudata(L, 1, HTTP_MT);
    lua_pushstring(L, h->curl != NULL ? "rctasks.http (open)" : "rctasks.http (closed)");
    return 1;
}

static const luaL_Reg http_methods[] = {
    {"request", http_request},
    {"stats", http_stats},
    {"close", http_close},
    {NULL, NULL}
};

static const luaL_Reg http_meta[] = {
    {"__gc", http_close},
    {"__close", http_close},
    {"__tostring", http_tostring},
    {NULL, NULL}
};

void rc_open_http(lua_State *L)
{
    if (luaL_newmetatable(L, HTTP_MT)) {
        rc_setfuncs(L, http_meta);
        lua_newtable(L);
        rc_setfuncs(L, http_methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "rctasks.http");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, http_new);
    lua_setfield(L, -2, "http");
    lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
    lua_setfield(L, -2, "curl_version");
}
