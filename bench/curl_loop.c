/* curl_loop: the floor for the request path. N sequential GETs on one reused libcurl easy handle,
 * the same headers rctasks sends, the body appended to one growing buffer, no decoding.
 * Built at bench time into build/bench/curl_loop (never committed as a binary).
 *   BENCH_KEY=... BENCH_SECRET=... curl_loop URL N [CAFILE]
 * Prints the RESULT line bench/run.lua reads. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    size_t k = size * n;
    if (b->len + k > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *d;
        while (cap < b->len + k)
            cap *= 2;
        d = realloc(b->data, cap);
        if (d == NULL)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, k);
    b->len += k;
    return k;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct curl_slist *auth_headers(void)
{
    const char *key = getenv("BENCH_KEY"), *secret = getenv("BENCH_SECRET");
    char line[512];
    struct curl_slist *h = NULL;
    if (key == NULL || secret == NULL)
        return NULL;
    snprintf(line, sizeof line, "x-api-key: %s", key);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "x-api-secret-key: %s", secret);
    h = h ? curl_slist_append(h, line) : NULL;
    h = h ? curl_slist_append(h, "accept: application/json") : NULL;
    return h;
}

static int get(CURL *c, buf *b, long *status)
{
    CURLcode rc;
    b->len = 0;
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "curl_loop: %s\n", curl_easy_strerror(rc));
        return 0;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return *status == 200;
}

int main(int argc, char **argv)
{
    CURL *c;
    struct curl_slist *hdrs;
    buf b = {NULL, 0, 0};
    long n, i = 0, k, chunks, done = 0, status = 0, conns = 0, total_conns = 0;
    double t0, c0, wall, used, best = 1e30;
    if (argc < 3 || (n = strtol(argv[2], NULL, 10)) < 1) {
        fprintf(stderr, "usage: curl_loop URL N [CAFILE]\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c = curl_easy_init()) == NULL)
        return 1;
    if ((hdrs = auth_headers()) == NULL) {
        fprintf(stderr, "curl_loop: BENCH_KEY and BENCH_SECRET must be set\n");
        return 2;
    }
    curl_easy_setopt(c, CURLOPT_URL, argv[1]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "bench/1");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)&b);
    if (argc > 3)
        curl_easy_setopt(c, CURLOPT_CAINFO, argv[3]);
    if (!get(c, &b, &status)) /* warm-up: connection and TLS handshake, as the Lua cases do */
        return 1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
    total_conns = conns;
    /* Timed in 10 chunks, like bench/request.lua: the fastest chunk is the least disturbed one. */
    chunks = n < 10 ? n : 10;
    t0 = mono();
    c0 = cpu();
    for (k = 1; k <= chunks; k++) {
        long upto = n * k / chunks;
        double tc = mono(), per;
        for (; i < upto; i++) {
            if (!get(c, &b, &status))
                return 1;
            curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
            total_conns += conns;
        }
        per = (mono() - tc) / (double)(upto - done);
        if (per < best)
            best = per;
        done = upto;
    }
    wall = mono() - t0;
    used = cpu() - c0;
    printf("RESULT case=request impl=c_libcurl n=%ld lua=c tls=%d per_call=%.9g best_per_call=%.9g "
           "cpu_per_call=%.9g rps=%.9g connects=%ld\n",
           n, strncmp(argv[1], "https:", 6) == 0, wall / (double)n, best, used / (double)n,
           (double)n / wall, total_conns);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    free(b.data);
    return 0;
}
