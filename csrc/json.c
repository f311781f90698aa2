/* json.c: a strict RFC 8259 JSON decoder that builds Lua values directly on the stack.
 *
 * Recursive descent over a byte range, one C frame per nesting level (capped at RC_JSON_MAX_DEPTH).
 * Nothing here mallocs: strings without escapes are pushed straight from the input, and escaped ones
 * are decoded into a scratch userdata that lives in a stack slot, so a Lua memory error (the only
 * error that can escape) leaks nothing. Bad input never raises: it returns 0 with a message naming
 * the 1-based byte position. */
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rctasks.h"

/* ===== CHARACTER CLASSES ===== */

enum { C_PLAIN = 0, C_QUOTE, C_BACKSLASH, C_CONTROL, C_HIGH };

/* String bytes: anything but plain stops the tight scanning loop. */
static const unsigned char str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 0x00 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0x80.. */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

#define IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

/* ===== DECODER STATE ===== */

typedef struct {
    lua_State *L;
    const char *start, *p, *end;
    char *err;
    size_t errlen;
    int scratch_slot; /* stack index of the scratch userdata (nil until first needed) */
    char *scratch;
    size_t scratch_cap;
    int depth;
    /* Size of the last object/array closed at each depth: siblings in API lists share a shape, so
     * it presizes the next table and saves the rehashes of growing it key by key. */
    unsigned char obj_hint[RC_JSON_MAX_DEPTH + 1];
    unsigned char arr_hint[RC_JSON_MAX_DEPTH + 1];
} rc_decoder;

#define HINT_MAX 64 /* bounds what a hostile document can make us preallocate */

static unsigned char hint_of(int n)
{
    return (unsigned char)(n > HINT_MAX ? HINT_MAX : n);
}

static size_t pos_of(const rc_decoder *d, const char *p)
{
    return (size_t)(p - d->start) + 1;
}

/* Record a message "<what> at byte N" and return -1, the failure code of every parse function. */
static int fail_at(rc_decoder *d, const char *p, const char *what)
{
    snprintf(d->err, d->errlen, "%s at byte %zu", what, pos_of(d, p));
    return -1;
}

/* Name the offending byte readably: printable ASCII quoted, anything else in hex. */
static int fail_char(rc_decoder *d, const char *p, const char *what)
{
    unsigned char c;
    if (p >= d->end) {
        snprintf(d->err, d->errlen, "unexpected end of input at byte %zu", pos_of(d, p));
        return -1;
    }
    c = (unsigned char)*p;
    if (c >= 0x20 && c < 0x7f)
        snprintf(d->err, d->errlen, "%s '%c' at byte %zu", what, c, pos_of(d, p));
    else
        snprintf(d->err, d->errlen, "%s 0x%02X at byte %zu", what, c, pos_of(d, p));
    return -1;
}

static void skip_ws(rc_decoder *d)
{
    const char *p = d->p, *end = d->end;
    while (p < end && IS_WS(*p))
        p++;
    d->p = p;
}

/* Make the scratch buffer hold at least n bytes. Growing replaces the userdata in its slot; the old
 * one is garbage, never freed by hand, so a memory error here cannot leak. */
static void scratch_reserve(rc_decoder *d, size_t n)
{
    size_t cap;
    if (n <= d->scratch_cap)
        return;
    cap = d->scratch_cap ? d->scratch_cap : 256;
    while (cap < n)
        cap = cap > ((size_t)-1) / 2 ? n : cap * 2;
    d->scratch = (char *)lua_newuserdata(d->L, cap);
    lua_replace(d->L, d->scratch_slot);
    d->scratch_cap = cap;
}

/* ===== STRINGS ===== */

/* Skip bytes that need no attention (not '"', '\\', a control byte or >= 0x80), eight at a time:
 * the word tests flag every such byte (and maybe bytes after one, which the byte loop sorts out). */
static const char *scan_plain(const char *p, const char *end)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t x, q, b, hit;
        memcpy(&x, p, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        hit = (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & highs;
        if (hit) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
            return p + (__builtin_ctzll(hit) >> 3); /* the lowest flag is always a true one */
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && str_class[(unsigned char)*p] == C_PLAIN)
        p++;
    return p;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 when invalid (Unicode 3.9 D92:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n, i;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Decode one \-escape at p (p[0] == '\\') into o; returns the advanced input pointer or NULL. */
static const char *unescape(rc_decoder *d, const char *p, char **out)
{
    char *o = *out;
    unsigned cp, lo;
    if (d->end - p < 2) {
        fail_at(d, p, "unterminated escape");
        return NULL;
    }
    switch (p[1]) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u':
        if (d->end - p < 6 || !hex4(p + 2, &cp)) {
            fail_at(d, p, "invalid \\u escape");
            return NULL;
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail_at(d, p, "lone low surrogate in \\u escape");
            return NULL;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate must be followed at once by an escaped low surrogate. */
            if (d->end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF) {
                fail_at(d, p, "lone high surrogate in \\u escape");
                return NULL;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        o = put_utf8(o, cp);
        *out = o;
        return p + 6;
    default:
        fail_char(d, p + 1, "invalid escape character");
        return NULL;
    }
    *out = o;
    return p + 2;
}

/* Slow path for a string with escapes: s is just after the opening quote, p at the first backslash.
 * Output never exceeds input length, so one reserve of the whole span bounds every write. */
static int parse_string_escaped(rc_decoder *d, const char *open, const char *s, const char *p)
{
    const char *end = d->end, *q = p;
    char *o;
    /* Find the closing quote first to size the scratch buffer. */
    while (q < end && *q != '"') {
        if (*q == '\\' && end - q < 2)
            break;
        q += (*q == '\\') ? 2 : 1;
    }
    if (q >= end || *q != '"') /* also a backslash as the last byte */
        return fail_at(d, open, "unterminated string");
    scratch_reserve(d, (size_t)(q - s));
    o = d->scratch;
    memcpy(o, s, (size_t)(p - s));
    o += p - s;
    for (;;) {
        const char *run = p;
        p = scan_plain(p, end);
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p >= end)
            return fail_at(d, open, "unterminated string");
        switch (str_class[(unsigned char)*p]) {
        case C_QUOTE:
            lua_pushlstring(d->L, d->scratch, (size_t)(o - d->scratch));
            d->p = p + 1;
            return 1;
        case C_BACKSLASH:
            p = unescape(d, p, &o);
            if (p == NULL)
                return -1;
            break;
        case C_CONTROL:
            return fail_char(d, p, "control character in string:");
        default: {
            size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (n == 0)
                return fail_at(d, p, "invalid UTF-8");
            memcpy(o, p, n);
            o += n;
            p += n;
        }
        }
    }
}

/* d->p at the opening quote; pushes the string. Escape-free strings are pushed without a copy. */
static int parse_string(rc_decoder *d)
{
    const char *open = d->p, *s = open + 1, *p = s, *end = d->end;
    for (;;) {
        p = scan_plain(p, end);
        if (p >= end)
            return fail_at(d, open, "unterminated string");
        switch (str_class[(unsigned char)*p]) {
        case C_QUOTE:
            lua_pushlstring(d->L, s, (size_t)(p - s));
            d->p = p + 1;
            return 1;
        case C_BACKSLASH:
            return parse_string_escaped(d, open, s, p);
        case C_CONTROL:
            return fail_char(d, p, "control character in string:");
        default: {
            size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (n == 0)
                return fail_at(d, p, "invalid UTF-8");
            p += n;
        }
        }
    }
}

/* ===== NUMBERS ===== */

/* Powers of ten exactly representable as doubles (Clinger's fast path). */
static const double pow10_exact[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* strtod honours the C locale's decimal point, JSON always uses '.': swap it in a scratch copy. */
static lua_Number slow_strtod(rc_decoder *d, const char *s, size_t n)
{
    char dp = localeconv()->decimal_point[0];
    size_t i;
    scratch_reserve(d, n + 1);
    memcpy(d->scratch, s, n);
    d->scratch[n] = '\0';
    if (dp != '.' && dp != '\0')
        for (i = 0; i < n; i++)
            if (d->scratch[i] == '.')
                d->scratch[i] = dp;
    return (lua_Number)strtod(d->scratch, NULL);
}

static int parse_number(rc_decoder *d)
{
    const char *s = d->p, *p = s, *end = d->end;
    uint64_t m = 0;
    int neg = 0, ndig = 0, frac = 0, is_int = 1, exact = 1;
    long exp10 = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || !IS_DIGIT(*p))
        return fail_char(d, p, "invalid number: unexpected character");
    if (*p == '0') {
        p++;
        if (p < end && IS_DIGIT(*p))
            return fail_at(d, s, "invalid number (leading zero)");
    } else {
        for (; p < end && IS_DIGIT(*p); p++) {
            if (ndig < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                ndig++;
            } else {
                exact = 0; /* more than 19 significant digits: leave it to strtod */
            }
        }
    }
    if (p < end && *p == '.') {
        is_int = 0;
        p++;
        if (p >= end || !IS_DIGIT(*p))
            return fail_char(d, p, "invalid number: expected digit, got");
        for (; p < end && IS_DIGIT(*p); p++) {
            if (m == 0 && *p == '0') {
                frac++; /* leading zeros of a fraction add no significant digit */
            } else if (ndig < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                ndig++;
                frac++;
            } else {
                exact = 0;
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        long e = 0;
        is_int = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = (*p++ == '-');
        if (p >= end || !IS_DIGIT(*p))
            return fail_char(d, p, "invalid number: expected digit, got");
        for (; p < end && IS_DIGIT(*p); p++)
            if (e < 100000) /* far beyond any double's range; stops overflow */
                e = e * 10 + (*p - '0');
        exp10 = eneg ? -e : e;
    }
    d->p = p;
#if RC_HAVE_INTEGERS
    if (is_int && exact) {
        if (!neg && m <= (uint64_t)LUA_MAXINTEGER) {
            lua_pushinteger(d->L, (lua_Integer)m);
            return 1;
        }
        if (neg && m <= (uint64_t)LUA_MAXINTEGER) {
            lua_pushinteger(d->L, -(lua_Integer)m);
            return 1;
        }
        if (neg && m == (uint64_t)LUA_MAXINTEGER + 1) {
            lua_pushinteger(d->L, LUA_MININTEGER);
            return 1;
        }
    }
#endif
    exp10 -= frac;
    if (exact && (is_int || (m <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22))) {
        /* Exact conversion: one correctly rounded multiply or divide (or a u64 -> double cast). */
        double v = (double)m;
        if (exp10 < 0)
            v /= pow10_exact[-exp10];
        else if (exp10 > 0)
            v *= pow10_exact[exp10];
        lua_pushnumber(d->L, (lua_Number)(neg ? -v : v));
        return 1;
    }
    lua_pushnumber(d->L, slow_strtod(d, s, (size_t)(p - s)));
    return 1;
}

/* ===== VALUES ===== */

static int parse_value(rc_decoder *d);

static int enter(rc_decoder *d)
{
    if (++d->depth > RC_JSON_MAX_DEPTH) {
        char what[48];
        snprintf(what, sizeof what, "nesting deeper than %d", RC_JSON_MAX_DEPTH);
        return fail_at(d, d->p, what);
    }
    /* table + key + value per level, plus room for the scratch userdata */
    if (!lua_checkstack(d->L, 4))
        return fail_at(d, d->p, "out of Lua stack space");
    return 0;
}

/* d->p at '{'. Members whose value is null are dropped (and erase an earlier duplicate). */
static int parse_object(rc_decoder *d)
{
    lua_State *L = d->L;
    int n = 0;
    if (enter(d) < 0)
        return -1;
    lua_createtable(L, 0, d->obj_hint[d->depth]);
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        d->obj_hint[d->depth--] = 0;
        return 1;
    }
    for (;;) {
        int r;
        if (d->p >= d->end || *d->p != '"') {
            if (d->p < d->end && *d->p == '}')
                return fail_at(d, d->p, "trailing comma before '}'");
            return fail_char(d, d->p, "expected a string key, got");
        }
        if (parse_string(d) < 0)
            return -1;
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':')
            return fail_char(d, d->p, "expected ':', got");
        d->p++;
        skip_ws(d);
        r = parse_value(d);
        if (r < 0)
            return -1;
        if (r > 0) {
            lua_rawset(L, -3);
            n++;
        } else {
            /* last duplicate wins, so a later null removes an earlier value */
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 2);
            } else {
                lua_pop(L, 1);
                lua_pushnil(L);
                lua_rawset(L, -3);
            }
        }
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_ws(d);
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            d->obj_hint[d->depth--] = hint_of(n);
            return 1;
        }
        return fail_char(d, d->p, "expected ',' or '}', got");
    }
}

/* d->p at '['. Nulls stay as the null sentinel so the array keeps its length. */
static int parse_array(rc_decoder *d)
{
    lua_State *L = d->L;
    int n = 0;
    if (enter(d) < 0)
        return -1;
    lua_createtable(L, d->arr_hint[d->depth], 0);
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        d->arr_hint[d->depth--] = 0;
        return 1;
    }
    for (;;) {
        int r;
        if (d->p < d->end && *d->p == ']')
            return fail_at(d, d->p, "trailing comma before ']'");
        r = parse_value(d);
        if (r < 0)
            return -1;
        if (r == 0)
            lua_pushlightuserdata(L, NULL);
        lua_rawseti(L, -2, ++n);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_ws(d);
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            d->arr_hint[d->depth--] = hint_of(n);
            return 1;
        }
        return fail_char(d, d->p, "expected ',' or ']', got");
    }
}

static int parse_literal(rc_decoder *d, const char *word, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (d->p + i >= d->end || d->p[i] != word[i])
            return fail_char(d, d->p + i, "unexpected character");
    d->p += n;
    return 1;
}

/* Returns 1 when a value was pushed, 0 for null (nothing pushed), -1 on error. d->p at the value. */
static int parse_value(rc_decoder *d)
{
    if (d->p >= d->end)
        return fail_char(d, d->p, "unexpected character");
    switch (*d->p) {
    case '"':
        return parse_string(d);
    case '{':
        return parse_object(d);
    case '[':
        return parse_array(d);
    case 't':
        if (parse_literal(d, "true", 4) < 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 1;
    case 'f':
        if (parse_literal(d, "false", 5) < 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 1;
    case 'n':
        return parse_literal(d, "null", 4) < 0 ? -1 : 0;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return parse_number(d);
    default:
        return fail_char(d, d->p, "unexpected character");
    }
}

/* ===== ENTRY POINTS ===== */

int rc_json_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen)
{
    rc_decoder d;
    int base = lua_gettop(L), r;
    d.L = L;
    d.start = d.p = s;
    d.end = s + len;
    d.err = err;
    d.errlen = errlen;
    d.scratch = NULL;
    d.scratch_cap = 0;
    d.depth = 0;
    memset(d.obj_hint, 0, sizeof d.obj_hint);
    memset(d.arr_hint, 0, sizeof d.arr_hint);
    if (errlen > 0)
        err[0] = '\0';
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "out of Lua stack space at byte 1");
        return 0;
    }
    lua_pushnil(L); /* the scratch slot */
    d.scratch_slot = base + 1;
    skip_ws(&d);
    r = parse_value(&d);
    if (r >= 0) {
        if (r == 0) /* a top-level null: the sentinel keeps "nil" meaning failure */
            lua_pushlightuserdata(L, NULL);
        skip_ws(&d);
        if (d.p < d.end) {
            fail_char(&d, d.p, "trailing garbage: unexpected character");
            r = -1;
        }
    }
    if (r < 0) {
        lua_settop(L, base);
        return 0;
    }
    lua_remove(L, base + 1); /* drop the scratch slot, the value moves down */
    return 1;
}

/* core.decode(str) -> value | nil, msg. A non-string argument is misuse and raises. */
static int json_decode(lua_State *L)
{
    char err[160];
    size_t len;
    const char *s;
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_argerror(L, 1, lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 1)));
    s = lua_tolstring(L, 1, &len);
    if (rc_json_decode(L, s, len, err, sizeof err))
        return 1;
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

void rc_open_json(lua_State *L)
{
    lua_pushcfunction(L, json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
