/* file.c: what the file store (lua/rctasks/store/file.lua) needs of the file system and Lua's io
 * library does not give: an exclusive lock that several processes on one host honour (flock on a
 * lock file beside the data), appends that reach the disk (write, then fsync) and a replace that
 * is all or nothing (write a temporary file, fsync, rename over, fsync the directory).
 *   core.lock(path, seconds) -> lock | nil, err     (lock:unlock(); __gc unlocks too)
 *   core.read_file(path, max) -> contents ("" when absent) | nil, err
 *   core.append_file(path, s) -> true | nil, err
 *   core.replace_file(path, s) -> true | nil, err
 * Failures are nil, message (with strerror); only misuse raises. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rctasks.h"

#define LOCK_MT "rctasks.lock"
#define FILE_MAX_PATH 4096

static int fail_errno(lua_State *L, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(errno));
    return 2;
}

/* Write all of s to fd, through short writes and EINTR. */
static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *check_path(lua_State *L, int i)
{
    size_t len;
    const char *p = luaL_checklstring(L, i, &len);
    if (len == 0 || len >= FILE_MAX_PATH || memchr(p, '\0', len) != NULL)
        luaL_argerror(L, i, "a file path without NUL, shorter than 4096 bytes");
    return p;
}

/* ===== Locks ===== */

typedef struct {
    int fd; /* -1 once unlocked */
} rc_lock;

static int lock_unlock(lua_State *L)
{
    rc_lock *k = luaL_checkudata(L, 1, LOCK_MT);
    if (k->fd >= 0) {
        flock(k->fd, LOCK_UN);
        close(k->fd);
        k->fd = -1;
    }
    return 0;
}

/* core.lock(path, seconds): wait up to `seconds` for the exclusive lock (polled every 10 ms). */
static int core_lock(lua_State *L)
{
    const char *path = check_path(L, 1);
    lua_Number wait = luaL_optnumber(L, 2, 10);
    struct timespec pause = {0, 10 * 1000 * 1000};
    long tries = wait > 0 ? (long)(wait * 100) + 1 : 1;
    rc_lock *k;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno(L, "cannot open the lock file");
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if ((errno != EWOULDBLOCK && errno != EINTR) || --tries <= 0) {
            int saved = errno;
            close(fd);
            errno = saved == EWOULDBLOCK ? ETIMEDOUT : saved;
            return fail_errno(L, "cannot take the lock");
        }
        nanosleep(&pause, NULL);
    }
    k = lua_newuserdata(L, sizeof *k);
    k->fd = fd;
    luaL_getmetatable(L, LOCK_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* ===== Files ===== */

/* core.read_file(path, max): the whole file, at most `max` bytes (a larger one is an error). */
static int core_read_file(lua_State *L)
{
    const char *path = check_path(L, 1);
    lua_Number max = luaL_optnumber(L, 2, 64.0 * 1024 * 1024);
    struct stat st;
    luaL_Buffer b;
    char chunk[8192];
    size_t total = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            lua_pushliteral(L, "");
            return 1;
        }
        return fail_errno(L, "cannot open the file");
    }
    if (fstat(fd, &st) == 0 && (lua_Number)st.st_size > max) {
        close(fd);
        lua_pushnil(L);
        lua_pushliteral(L, "the file is larger than its cap");
        return 2;
    }
    luaL_buffinit(L, &b);
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return fail_errno(L, "cannot read the file");
        }
        if (r == 0)
            break;
        total += (size_t)r;
        if ((lua_Number)total > max) { /* it grew while we read */
            close(fd);
            lua_pushnil(L);
            lua_pushliteral(L, "the file is larger than its cap");
            return 2;
        }
        luaL_addlstring(&b, chunk, (size_t)r);
    }
    close(fd);
    luaL_pushresult(&b);
    return 1;
}

/* core.append_file(path, s): one write with O_APPEND (the kernel keeps concurrent appends whole),
 * then fsync. */
static int core_append_file(lua_State *L)
{
    const char *path = check_path(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno(L, "cannot open the file");
    if (write_all(fd, s, n) != 0 || fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return fail_errno(L, "cannot append to the file");
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

/* fsync the directory holding path, so a rename into it survives a crash. */
static int sync_dir(const char *path)
{
    char dir[FILE_MAX_PATH];
    const char *slash = strrchr(path, '/');
    int fd, rc;
    if (slash == NULL) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == path) {
        dir[0] = '/';
        dir[1] = '\0';
    } else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* core.replace_file(path, s): path.tmp written and synced, renamed over path, directory synced. */
static int core_replace_file(lua_State *L)
{
    const char *path = check_path(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    char tmp[FILE_MAX_PATH + 8];
    int fd;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno(L, "cannot write the temporary file");
    if (write_all(fd, s, n) != 0 || fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return fail_errno(L, "cannot write the temporary file");
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return fail_errno(L, "cannot replace the file");
    }
    if (sync_dir(path) != 0)
        return fail_errno(L, "cannot sync the directory");
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg lock_methods[] = {
    {"unlock", lock_unlock},
    {NULL, NULL}
};

void rc_open_file(lua_State *L)
{
    if (luaL_newmetatable(L, LOCK_MT)) {
        lua_pushcfunction(L, lock_unlock);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        rc_setfuncs(L, lock_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, core_lock);
    lua_setfield(L, -2, "lock");
    lua_pushcfunction(L, core_read_file);
    lua_setfield(L, -2, "read_file");
    lua_pushcfunction(L, core_append_file);
    lua_setfield(L, -2, "append_file");
    lua_pushcfunction(L, core_replace_file);
    lua_setfield(L, -2, "replace_file");
}
