/* Whole-file I/O: bounded reads that refuse FIFOs and devices, atomic writes (temporary file in
 * the same directory + rename). */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include "pndm_io.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
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

pndm_status pndm_write_file_atomic(const char *path, const void *data, size_t size, pndm_error *err) {
    if (!path || !*path) return core_fail(err, PNDM_ERR_USAGE, "empty output path");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        pndm_status s = core_fail(err, PNDM_ERR_IO, "%s: cannot create file: %s", path, strerror(errno));
        free(tmp);
        return s;
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
        pndm_status s = core_fail(err, PNDM_ERR_IO, "%s: write failed: %s%s", path, strerror(saved),
                                  saved == ENOSPC || saved == EDQUOT ? " (disk full)" : "");
        unlink(tmp);
        free(tmp);
        return s;
    }
    if (rename(tmp, path) != 0) {
        pndm_status s = core_fail(err, PNDM_ERR_IO, "%s: cannot rename temporary file: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return PNDM_OK;
}

void pndm_sha256_hex(const void *data, size_t size, char hex[65]) { sha256_hex(data, size, hex); }
