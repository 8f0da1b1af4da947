/* Whole-file I/O: bounded reads that refuse FIFOs and devices, atomic writes (temporary file in
 * the same directory + rename) that never rename over a device, a FIFO, a directory or a
 * symbolic link (a link to a regular file is written through: its target is replaced). */
#define _GNU_SOURCE /* renameat2 */
#include "core.h"
#include "pndm_io.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pndm_status pndm_read_file(const char *path, size_t max_size, char **data, size_t *size, pndm_error *err) {
    *data = NULL;
    *size = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return core_fail(err, PNDM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return core_fail(err, PNDM_ERR_IO, "%s: not a regular file", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return core_fail(err, PNDM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t n = (size_t)st.st_size;
    if (max_size && n > max_size) {
        fclose(f);
        return core_fail(err, PNDM_ERR_IO, "%s: file too large (%zu bytes, limit %zu)", path, n, max_size);
    }
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return core_fail(err, PNDM_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return core_fail(err, PNDM_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return PNDM_OK;
}

/* What is at a path, in words, for messages. */
static const char *kind_name(mode_t m) {
    if (S_ISREG(m)) return "a regular file";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

pndm_status pndm_output_resolve(const char *path, pndm_output_target *t, pndm_error *err) {
    memset(t, 0, sizeof *t);
    if (!path || !*path) return core_fail(err, PNDM_ERR_USAGE, "empty output path");
    if (strlen(path) >= sizeof t->path) return core_fail(err, PNDM_ERR_USAGE, "%.64s...: output path too long", path);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        /* a symbolic link: the bytes go to its target (the link stays), which must be a regular
         * file; a dangling link or one to a device, FIFO or directory is refused */
        t->via_symlink = 1;
        char *real = realpath(path, NULL);
        if (!real)
            return core_fail(err, PNDM_ERR_IO,
                             "%s: is a symbolic link whose target cannot be resolved (%s): not written", path,
                             strerror(errno));
        int long_ = strlen(real) >= sizeof t->path;
        if (!long_) snprintf(t->path, sizeof t->path, "%s", real);
        free(real);
        if (long_) return core_fail(err, PNDM_ERR_USAGE, "%s: the link's target path is too long", path);
        if (stat(t->path, &st) != 0)
            return core_fail(err, PNDM_ERR_IO, "%s: cannot stat the link's target '%s': %s", path, t->path,
                             strerror(errno));
        if (!S_ISREG(st.st_mode))
            return core_fail(err, PNDM_ERR_IO, "%s: is a symbolic link to %s ('%s'): not replaced", path,
                             kind_name(st.st_mode), t->path);
        t->exists = 1;
    } else if (lstat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return core_fail(err, PNDM_ERR_IO, "%s: exists and is %s: not replaced", path, kind_name(st.st_mode));
        snprintf(t->path, sizeof t->path, "%s", path);
        t->exists = 1;
    } else if (errno != ENOENT) {
        return core_fail(err, PNDM_ERR_IO, "%s: %s", path, strerror(errno));
    } else {
        snprintf(t->path, sizeof t->path, "%s", path);
    }
    if (t->exists) {
        t->dev = (uint64_t)st.st_dev;
        t->ino = (uint64_t)st.st_ino;
    }
    /* the directory the file goes in (the temporary file is created there too) */
    char dir[sizeof t->path];
    const char *slash = strrchr(t->path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == t->path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - t->path), t->path);
    t->name = slash ? slash + 1 : t->path;
    if (!*t->name) return core_fail(err, PNDM_ERR_IO, "%s: is a directory (no file name)", path);
    if (stat(dir, &st) != 0) return core_fail(err, PNDM_ERR_IO, "%s: directory '%s' does not exist", path, dir);
    if (!S_ISDIR(st.st_mode)) return core_fail(err, PNDM_ERR_IO, "%s: '%s' is not a directory", path, dir);
    if (access(dir, W_OK) != 0) return core_fail(err, PNDM_ERR_IO, "%s: directory '%s' is not writable", path, dir);
    t->dir_dev = (uint64_t)st.st_dev;
    t->dir_ino = (uint64_t)st.st_ino;
    return PNDM_OK;
}

int pndm_output_same(const pndm_output_target *a, const pndm_output_target *b) {
    if (a->exists && b->exists && a->dev == b->dev && a->ino == b->ino) return 1;
    return a->dir_dev == b->dir_dev && a->dir_ino == b->dir_ino && strcmp(a->name, b->name) == 0;
}

/* Put the temporary file `tmp` in place at `target` without replacing anything there: link()
 * fails with EEXIST if a file appeared meanwhile (another run); file systems without hard
 * links fall back to renameat2(RENAME_NOREPLACE), then to a check just before the rename. */
static int place_no_replace(const char *tmp, const char *target) {
    if (link(tmp, target) == 0) {
        unlink(tmp);
        return 0;
    }
    if (errno == EEXIST) return -1;
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_NOREPLACE) == 0) return 0;
    if (errno == EEXIST) return -1;
#endif
    struct stat st;
    if (lstat(target, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(tmp, target);
}

pndm_status pndm_write_file_ex(const char *path, const void *data, size_t size, unsigned flags, pndm_error *err) {
    pndm_output_target t;
    pndm_status st = pndm_output_resolve(path, &t, err);
    if (st) return st;
    if (t.exists && (flags & PNDM_WRITE_NO_REPLACE))
        return core_fail(err, PNDM_ERR_IO, "%s: already exists: not replaced", path);
    size_t plen = strlen(t.path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.XXXXXX", t.path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = core_fail(err, PNDM_ERR_IO, "%s: cannot create file: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    /* mkstemp creates 0600; give the file the usual permissions (umask applies). */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    /* write, fsync, close; on failure errno says why (fd is closed either way) */
    const unsigned char *p = data;
    size_t left = size;
    int ok = 1;
    while (ok && left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            ok = 0;
        else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (ok && fsync(fd) != 0 && errno != EINVAL && errno != EROFS) ok = 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        st = core_fail(err, PNDM_ERR_IO, "%s: write failed: %s%s", path, strerror(saved),
                       saved == ENOSPC || saved == EDQUOT ? " (disk full)" : "");
    } else if (flags & PNDM_WRITE_NO_REPLACE) {
        if (place_no_replace(tmp, t.path) != 0)
            st = errno == EEXIST
                ? core_fail(err, PNDM_ERR_IO, "%s: already exists: not replaced", path)
                : core_fail(err, PNDM_ERR_IO, "%s: cannot rename temporary file: %s", path, strerror(errno));
    } else if (rename(tmp, t.path) != 0) {
        st = core_fail(err, PNDM_ERR_IO, "%s: cannot rename temporary file: %s", path, strerror(errno));
    }
    if (st) unlink(tmp);
    free(tmp);
    return st;
}

pndm_status pndm_write_file_atomic(const char *path, const void *data, size_t size, pndm_error *err) {
    return pndm_write_file_ex(path, data, size, 0, err);
}

void pndm_sha256_hex(const void *data, size_t size, char hex[65]) { sha256_hex(data, size, hex); }
