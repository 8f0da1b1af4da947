// ctest-label: unit
/* The atomic writer's rules (pndm_write_file_ex, pndm_output_resolve): what may be replaced,
 * what is written through, what is refused and never renamed over, and when two paths are one
 * output. */
#define _DEFAULT_SOURCE
#include "harness.h"
#include "pndm_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static const char *P(const char *name) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int file_is(const char *path, const char *content) {
    char *data;
    size_t n;
    pndm_error err;
    if (pndm_read_file(path, 0, &data, &n, &err)) return 0;
    int same = n == strlen(content) && memcmp(data, content, n) == 0;
    free(data);
    return same;
}

static int tmp_files_left(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '\\.tmp\\.'", dir);
    return system(cmd) == 0;
}

int main(void) {
    pndm_error err;
    snprintf(dir, sizeof dir, "/tmp/pndm_test_files_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);

    /* plain file: created, then replaced; NO_REPLACE refuses it and leaves it alone */
    CHECK(pndm_write_file_atomic(P("a.bin"), "one", 3, &err) == PNDM_OK);
    CHECK(pndm_write_file_atomic(P("a.bin"), "two", 3, &err) == PNDM_OK);
    CHECK(file_is(P("a.bin"), "two"));
    CHECK(pndm_write_file_ex(P("a.bin"), "three", 5, PNDM_WRITE_NO_REPLACE, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "already exists");
    CHECK(file_is(P("a.bin"), "two"));
    CHECK(pndm_write_file_ex(P("new.bin"), "n", 1, PNDM_WRITE_NO_REPLACE, &err) == PNDM_OK);
    CHECK(file_is(P("new.bin"), "n"));

    /* a link to a regular file is written through: the target changes, the link stays a link */
    CHECK(symlink("a.bin", P("link.bin")) == 0);
    CHECK(pndm_write_file_atomic(P("link.bin"), "via", 3, &err) == PNDM_OK);
    struct stat st;
    CHECK(lstat(P("link.bin"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(file_is(P("a.bin"), "via"));
    CHECK(pndm_write_file_ex(P("link.bin"), "x", 1, PNDM_WRITE_NO_REPLACE, &err) == PNDM_ERR_IO);

    /* refused, never renamed over: a dangling link, links to a device and a directory, a FIFO,
     * a directory, a missing directory */
    CHECK(symlink("nowhere.bin", P("dangling.bin")) == 0);
    CHECK(pndm_write_file_atomic(P("dangling.bin"), "x", 1, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "symbolic link whose target cannot be resolved");
    CHECK(lstat(P("dangling.bin"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(symlink("/dev/null", P("null.bin")) == 0);
    CHECK(pndm_write_file_atomic(P("null.bin"), "x", 1, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "is a symbolic link to a character device ('/dev/null'): not replaced");
    CHECK(lstat(P("null.bin"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    CHECK(mkdir(P("d"), 0700) == 0);
    CHECK(symlink("d", P("dirlink")) == 0);
    CHECK(pndm_write_file_atomic(P("dirlink"), "x", 1, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "symbolic link to a directory");
    CHECK(pndm_write_file_atomic(P("d"), "x", 1, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "exists and is a directory: not replaced");
    CHECK(mkfifo(P("fifo"), 0600) == 0);
    CHECK(pndm_write_file_atomic(P("fifo"), "x", 1, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "exists and is a FIFO: not replaced");
    CHECK(lstat(P("fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(pndm_write_file_atomic(P("nodir/x"), "x", 1, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "does not exist");
    CHECK(pndm_write_file_atomic("", "x", 1, &err) == PNDM_ERR_USAGE);
    CHECK(!tmp_files_left());

    /* one output under several spellings: ./, .., a symlinked directory, a link, a hard link */
    pndm_output_target t1, t2;
    CHECK(pndm_output_resolve(P("x.png"), &t1, &err) == PNDM_OK && !t1.exists);
    CHECK(pndm_output_resolve(P("./x.png"), &t2, &err) == PNDM_OK && pndm_output_same(&t1, &t2));
    CHECK(pndm_output_resolve(P("d/../x.png"), &t2, &err) == PNDM_OK && pndm_output_same(&t1, &t2));
    CHECK(pndm_output_resolve(P("d/x.png"), &t2, &err) == PNDM_OK && !pndm_output_same(&t1, &t2));
    CHECK(pndm_output_resolve(P("dirlink/x.png"), &t1, &err) == PNDM_OK && pndm_output_same(&t1, &t2));
    CHECK(pndm_output_resolve(P("a.bin"), &t1, &err) == PNDM_OK && t1.exists && !t1.via_symlink);
    CHECK(pndm_output_resolve(P("link.bin"), &t2, &err) == PNDM_OK && t2.via_symlink);
    CHECK(pndm_output_same(&t1, &t2));
    CHECK(link(P("a.bin"), P("hard.bin")) == 0);
    CHECK(pndm_output_resolve(P("hard.bin"), &t2, &err) == PNDM_OK && pndm_output_same(&t1, &t2));

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return TEST_SUMMARY();
}
