/* Weight files of any format (weights.h): mapping, format detection by content, shard indexes. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include "weights.h"
#include "core.h"
#include "layout.h"
#include "pndm_io.h"
#include "safetensors.h"
#include "torchbin.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WT_MAX_INDEX ((size_t)64 << 20) /* shard index files larger than 64 MiB are refused */
#define WT_MAX_SHARDS 10000

pndm_status wt_map_file(const char *path, void **map_out, size_t *size_out, pndm_error *err) {
    *map_out = NULL;
    *size_out = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return core_fail(err, PNDM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pndm_status s = core_fail(err, PNDM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return core_fail(err, PNDM_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return core_fail(err, PNDM_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            pndm_status s = core_fail(err, PNDM_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
            close(fd);
            return s;
        }
    }
    close(fd);
    *map_out = map;
    *size_out = size;
    return PNDM_OK;
}

/* ---- what a file looks like ---------------------------------------------------------------- */
static int starts(const unsigned char *b, size_t n, const char *magic, size_t ml) {
    return n >= ml && memcmp(b, magic, ml) == 0;
}

/* printable ASCII, whitespace or UTF-8 multi-byte sequences only */
static int looks_text(const unsigned char *b, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = b[i];
        if (c == '\t' || c == '\n' || c == '\r' || (c >= 32 && c < 127)) {
            i++;
            continue;
        }
        int extra = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (extra < 0 || c < 0xc2) return 0;
        for (int k = 1; k <= extra; k++) {
            if (i + (size_t)k >= n) return 1; /* cut off by the sniffing window */
            if ((b[i + (size_t)k] & 0xc0) != 0x80) return 0;
        }
        i += (size_t)extra + 1;
    }
    return 1;
}

const char *wt_describe(const void *buf, size_t size, char *scratch, size_t scratch_size) {
    const unsigned char *b = buf;
    if (size == 0) return "an empty file";
    if (starts(b, size, "\x89PNG\r\n\x1a\n", 8)) return "a PNG image";
    if (starts(b, size, "\xff\xd8\xff", 3)) return "a JPEG image";
    if (starts(b, size, "GIF87a", 6) || starts(b, size, "GIF89a", 6)) return "a GIF image";
    if (size >= 12 && starts(b, size, "RIFF", 4) && memcmp(b + 8, "WEBP", 4) == 0) return "a WebP image";
    if (starts(b, size, "%PDF", 4)) return "a PDF document";
    if (starts(b, size, "\x1f\x8b", 2)) return "a gzip-compressed file (decompress it first)";
    if (starts(b, size, "BZh", 3) && size > 3 && b[3] >= '1' && b[3] <= '9') return "a bzip2-compressed file";
    if (starts(b, size,
               "\xfd"
               "7zXZ",
               6))
        return "an xz-compressed file";
    if (starts(b, size, "\x28\xb5\x2f\xfd", 4)) return "a zstd-compressed file";
    if (starts(b, size, "7z\xbc\xaf\x27\x1c", 6)) return "a 7-Zip archive";
    if (size >= 262 && memcmp(b + 257, "ustar", 5) == 0) return "a tar archive";
    if (starts(b, size, "\x93NUMPY", 6)) return "a NumPy .npy array";
    if (starts(b, size, "GGUF", 4)) return "a GGUF file (llama.cpp / ggml)";
    if (starts(b, size, "\x89HDF\r\n\x1a\n", 8)) return "an HDF5 file (Keras .h5?)";
    if (starts(b, size,
               "\x7f"
               "ELF",
               4))
        return "an ELF executable";
    if (starts(b, size, "PK\x03\x04", 4) || starts(b, size, "PK\x05\x06", 4)) return "a zip archive";
    if (starts(b, size, "version https://git-lfs.github.com/spec", 39))
        return "a Git LFS pointer, not the weights themselves (run 'git lfs pull' in the clone)";
    if (size >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return "a Python pickle that is not a torch.save file";
    size_t n = size < 64 ? size : 64;
    if (looks_text(b, n)) {
        size_t i = 0;
        while (i < n && isspace(b[i])) i++;
        if (i < n &&
            (strncasecmp((const char *)b + i, "<!doctype html", n - i < 14 ? n - i : 14) == 0 ||
             strncasecmp((const char *)b + i, "<html", n - i < 5 ? n - i : 5) == 0))
            return "an HTML page (did a download save a web page instead of the file?)";
        if (i < n && (b[i] == '{' || b[i] == '['))
            return "JSON text (a config file? -m takes the folder that holds config.json and the weights)";
        char line[48];
        size_t l = 0;
        for (size_t k = 0; k < n && l < 40 && b[k] != '\n' && b[k] != '\r'; k++) line[l++] = (char)b[k];
        line[l] = 0;
        char q[160];
        core_quote(q, sizeof q, line);
        snprintf(scratch, scratch_size, "a text file ('%s%s')", q, l == 40 ? "..." : "");
        return scratch;
    }
    return NULL;
}

/* a buffer that starts like a safetensors file: 8 bytes of header length, then a JSON object
 * ('{' followed by '"', '}' or a blank) */
static int looks_safetensors(const unsigned char *b, size_t size) {
    if (size < 10 || b[8] != '{') return size == 9 && b[8] == '{';
    return b[9] == '"' || b[9] == '}' || b[9] == ' ' || b[9] == '\n' || b[9] == '\r' || b[9] == '\t';
}

pndm_status wt_parse(tt_table *t, const void *buf, size_t size, const char *name, pndm_error *err) {
    if (pt_looks_like(buf, size)) return pt_parse(t, buf, size, name, 1, err);
    pndm_status s = st_parse(t, buf, size, name, err);
    if (s == PNDM_OK || s == PNDM_ERR_NOMEM || size == 0 || looks_safetensors(buf, size)) return s;
    char scratch[200], src[160];
    const char *what = wt_describe(buf, size, scratch, sizeof scratch);
    core_quote(src, sizeof src, name);
    if (what)
        return core_fail(
            err, s, "%s: not a safetensors file: it starts like %s (pndm reads safetensors and PyTorch .bin weights)",
            src, what);
    /* unknown bytes: keep the reader's message, say what the first bytes are */
    const unsigned char *b = buf;
    char hex[64];
    size_t o = 0;
    for (size_t i = 0; i < size && i < 8; i++)
        o += (size_t)snprintf(hex + o, sizeof hex - o, "%s%02x", i ? " " : "", b[i]);
    char old[sizeof err->msg];
    snprintf(old, sizeof old, "%s", err ? err->msg : "");
    return core_fail(err, s, "%s; it does not look like a safetensors or PyTorch file (first bytes %s)", old, hex);
}

pndm_status wt_open(tt_table *t, const char *path, pndm_error *err) {
    memset(t, 0, sizeof *t);
    void *map;
    size_t size;
    pndm_status s = wt_map_file(path, &map, &size, err);
    if (s) return s;
    static const unsigned char empty[1] = {0};
    s = wt_parse(t, map ? map : empty, size, path, err);
    if (s) {
        if (map) munmap(map, size);
        return s;
    }
    if (map && (s = tt_own_mapping(t, map, size, err)) != PNDM_OK) {
        tt_free(t);
        munmap(map, size);
    }
    return s;
}

/* ---- shard indexes -------------------------------------------------------------------------- */
static int safe_relative(const char *f) {
    if (!*f || f[0] == '/') return 0;
    for (const char *p = f; *p;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || (l == 2 && p[0] == '.' && p[1] == '.')) return 0;
        if (!e) break;
        p = e + 1;
    }
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

pndm_status wt_open_index(tt_table *t, const char *index_path, const char *root, pndm_error *err) {
    memset(t, 0, sizeof *t);
    char *text = NULL;
    size_t len = 0;
    pndm_status s = pndm_read_file(index_path, WT_MAX_INDEX, &text, &len, err);
    if (s) return s;
    char src[160];
    core_quote(src, sizeof src, index_path);
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = doc ? cJSON_GetObjectItemCaseSensitive(doc, "weight_map") : NULL;
    if (!doc || !cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return core_fail(err, PNDM_ERR_MODEL, "%s: not a valid JSON object (a shard index)", src);
    }
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(doc);
        return core_fail(err, PNDM_ERR_MODEL, "%s: no \"weight_map\" object (not a shard index)", src);
    }
    /* the distinct shard files, sorted (as diffusers: sorted(set(weight_map.values()))) */
    int n = cJSON_GetArraySize(map), n_files = 0;
    char **files = calloc((size_t)(n ? n : 1), sizeof *files);
    if (!files) {
        cJSON_Delete(doc);
        return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
    }
    for (const cJSON *e = map->child; e && !s; e = e->next) {
        char q[160];
        core_quote(q, sizeof q, e->string);
        if (!cJSON_IsString(e) || !e->valuestring)
            s = core_fail(err, PNDM_ERR_MODEL, "%s: weight_map entry '%s' is not a file name", src, q);
        else if (!safe_relative(e->valuestring)) {
            char qf[160];
            core_quote(qf, sizeof qf, e->valuestring);
            s = core_fail(err, PNDM_ERR_MODEL,
                          "%s: weight_map entry '%s' names '%s', not a file inside the index's folder", src, q, qf);
        } else
            files[n_files++] = e->valuestring;
    }
    if (!s && n_files == 0) s = core_fail(err, PNDM_ERR_MODEL, "%s: the weight_map is empty", src);
    if (!s) {
        qsort(files, (size_t)n_files, sizeof *files, cmp_str);
        int u = 0;
        for (int i = 0; i < n_files; i++)
            if (u == 0 || strcmp(files[u - 1], files[i]) != 0) files[u++] = files[i];
        n_files = u;
        if (n_files > WT_MAX_SHARDS)
            s = core_fail(err, PNDM_ERR_MODEL, "%s: %d shard files (at most %d)", src, n_files, WT_MAX_SHARDS);
    }
    if (!s) s = tt_init(t, index_path, err);
    /* the folder of the index */
    const char *slash = strrchr(index_path, '/');
    size_t dl = slash ? (size_t)(slash - index_path) + 1 : 0;
    for (int i = 0; i < n_files && !s; i++) {
        size_t fl = strlen(files[i]);
        char *path = malloc(dl + fl + 1);
        if (!path) {
            s = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
            break;
        }
        memcpy(path, index_path, dl);
        memcpy(path + dl, files[i], fl + 1);
        tt_table shard;
        memset(&shard, 0, sizeof shard);
        s = root ? lay_check_inside(root, path, err) : PNDM_OK;
        if (!s) s = wt_open(&shard, path, err);
        if (s && err && err->code == PNDM_ERR_IO) {
            char q[160];
            core_quote(q, sizeof q, files[i]);
            core_fail_prefix(err, "%s: shard '%s'", src, q);
        }
        /* every tensor the map puts in this shard is there */
        if (!s)
            for (const cJSON *e = map->child; e && !s; e = e->next)
                if (strcmp(e->valuestring, files[i]) == 0 && !tt_find(&shard, e->string)) {
                    char q[160], qf[160];
                    core_quote(q, sizeof q, e->string);
                    core_quote(qf, sizeof qf, path);
                    s = core_fail(err, PNDM_ERR_MODEL,
                                  "%s: tensor '%s': the weight_map puts it in %s, which does not hold it", src, q, qf);
                }
        if (!s) s = tt_merge(t, &shard, err);
        tt_free(&shard);
        free(path);
    }
    if (!s) s = tt_finish(t, err);
    free(files);
    cJSON_Delete(doc);
    if (s) tt_free(t);
    return s;
}
