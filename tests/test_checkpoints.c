// ctest-label: unit
/* Checkpoint formats and model locations (tests/data/ckpt, made by tools/make_ckpt_fixtures.py):
 *   - every format of the fixture model (safetensors f32/f16, .bin zip / legacy / bf16 / views /
 *     zip64, shards of both) gives the tensors of the f32 safetensors file: identical floats for
 *     f32, the f16/bf16 rounding of them otherwise; contiguous f32 views used in place;
 *   - the restricted unpickler: opcodes, memo, limits, refusals by name, nothing run;
 *   - the zip reader: CRC, prefix, refusals;
 *   - layouts: Hub cache lookup (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG_CACHE_HOME,
 *     HOME, ~ and $VAR expansion), revisions, symlinks leaving the cache, variants, messages;
 *   - diffusers' old attention names renamed, both spellings refused.
 * Also `test_checkpoints --compare OUT.npy REF.npy RTOL ATOL` for tests/cli_checkpoints.sh: exit 0
 * when the shapes match and max|out - ref| <= RTOL * max|ref| + ATOL (prints the figures). */
#define _GNU_SOURCE
#include "harness.h"
#include "npy_util.h"
#include "layout.h"
#include "model.h"
#include "pickle.h"
#include "pndm.h"
#include "pndm_io.h"
#include "safetensors.h"
#include "torchbin.h"
#include "weights.h"
#include "zip.h"

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define CK PNDM_TEST_DATA "/ckpt"

static pndm_status open_any(tt_table *t, const char *path, pndm_error *e) {
    size_t l = strlen(path);
    if (l > 11 && strcmp(path + l - 11, ".index.json") == 0) return wt_open_index(t, path, NULL, e);
    return wt_open(t, path, e);
}

/* every tensor of `path` (after renames) equals the reference's, converted to f32 */
static void check_same_tensors(const char *path, const tt_table *ref, int exact) {
    tt_table t;
    pndm_error e = {0};
    pndm_status s = open_any(&t, path, &e);
    CHECK_MSG(s == PNDM_OK, "%s: %s", path, e.msg);
    if (s) return;
    CHECK_MSG(model_convert_keys(&t, &e) == PNDM_OK, "%s", e.msg);
    CHECK_MSG(t.n_tensors == ref->n_tensors, "%s: %d tensors, reference %d", path, t.n_tensors, ref->n_tensors);
    int bad = 0;
    for (int i = 0; i < ref->n_tensors && !bad; i++) {
        const tt_tensor *r = &ref->tensors[i], *x = tt_find(&t, r->name);
        if (!x) {
            CHECK_MSG(0, "%s: no tensor '%s'", path, r->name);
            bad = 1;
            break;
        }
        int same_shape = x->ndim == r->ndim;
        for (int d = 0; same_shape && d < r->ndim; d++) same_shape = x->shape[d] == r->shape[d];
        CHECK_MSG(same_shape, "%s: tensor '%s' shape", path, r->name);
        const float *a = NULL, *b = NULL;
        int oa = 0, ob = 0;
        if (tt_tensor_f32(&t, x, &a, &oa, &e) != PNDM_OK || tt_tensor_f32(ref, r, &b, &ob, &e) != PNDM_OK) {
            CHECK_MSG(0, "%s: tensor '%s' cannot be read as float32: %s", path, r->name, e.msg);
            if (oa) free((void *)a);
            bad = 1;
            break;
        }
        double md = test_max_abs_diff(a, b, r->count), mb = test_max_abs(b, r->count);
        /* f16 / bf16: round-to-nearest of the f32 value */
        double tol = exact ? 0 : (x->dtype == TT_BF16 ? 1.0 / 256 : 1.0 / 2048) * (mb > 1e-30 ? mb : 1);
        if (!(md <= tol)) {
            CHECK_MSG(0, "%s: tensor '%s' differs by %g (tol %g)", path, r->name, md, tol);
            bad = 1;
        }
        if (oa) free((void *)a);
        if (ob) free((void *)b);
    }
    tt_free(&t);
}

static void test_formats(void) {
    tt_table ref;
    pndm_error e = {0};
    CHECK_MSG(wt_open(&ref, CK "/pipe_variant/unet/diffusion_pytorch_model.safetensors", &e) == PNDM_OK, "%s", e.msg);
    CHECK(ref.n_tensors > 50);
    check_same_tensors(CK "/model_bin_zip/diffusion_pytorch_model.bin", &ref, 1);
    check_same_tensors(CK "/model_bin_legacy/diffusion_pytorch_model.bin", &ref, 1);
    check_same_tensors(CK "/model_bin_views/diffusion_pytorch_model.bin", &ref, 1);
    check_same_tensors(CK "/model_bin_zip64/diffusion_pytorch_model.bin", &ref, 1);
    check_same_tensors(CK "/model_sharded_st/diffusion_pytorch_model.safetensors.index.json", &ref, 1);
    check_same_tensors(CK "/model_sharded_bin/diffusion_pytorch_model.bin.index.json", &ref, 1);
    check_same_tensors(CK "/model_bin_bf16/diffusion_pytorch_model.bin", &ref, 0);
    check_same_tensors(CK "/pipe_variant/unet/diffusion_pytorch_model.fp16.safetensors", &ref, 0);
    tt_free(&ref);

    /* in place: contiguous f32 tensors of a zip .bin point into the mapping; strided views are copies */
    tt_table t;
    CHECK(wt_open(&t, CK "/model_bin_views/diffusion_pytorch_model.bin", &e) == PNDM_OK);
    const tt_region *map = NULL;
    for (int i = 0; i < t.n_regions; i++)
        if (t.regions[i].mapped) map = &t.regions[i];
    CHECK(map != NULL);
    const tt_tensor *q = tt_find(&t, "mid_block.attentions.0.to_q.weight");
    const tt_tensor *k = tt_find(&t, "mid_block.attentions.0.to_k.weight");
    const tt_tensor *cw = tt_find(&t, "conv_in.weight");
    CHECK(q && k && cw);
    if (q && k && cw && map) {
        const char *lo = map->addr, *hi = lo + map->size;
        CHECK((const char *)q->data >= lo && (const char *)q->data < hi);      /* a slice of a shared storage */
        CHECK((const char *)k->data == (const char *)q->data + q->nbytes);     /* the next slice of it */
        CHECK(!((const char *)cw->data >= lo && (const char *)cw->data < hi)); /* transposed: gathered */
        CHECK(((uintptr_t)q->data & 63) == 0);                                 /* torch aligns records to 64 */
    }
    tt_free(&t);
}

/* five tensors of known values, in both formats */
static void check_values(const tt_table *t, const char *name, tt_dtype dt, int ndim, const float *want, size_t n) {
    const tt_tensor *x = tt_find(t, name);
    CHECK_MSG(x != NULL, "%s: no tensor '%s'", t->source, name);
    if (!x) return;
    CHECK_MSG(x->dtype == dt && x->ndim == ndim && x->count == n, "%s: '%s' dtype/ndim/count", t->source, name);
    const float *v;
    int own;
    pndm_error e;
    if (x->count != n || tt_tensor_f32(t, x, &v, &own, &e)) return;
    CHECK_MSG(memcmp(v, want, n * sizeof *v) == 0, "%s: '%s' values", t->source, name);
    if (own) free((void *)v);
}

static void test_small(void) {
    const char *files[] = {CK "/small/small_zip.bin", CK "/small/small_legacy.bin"};
    for (int f = 0; f < 2; f++) {
        tt_table t;
        pndm_error e = {0};
        CHECK_MSG(wt_open(&t, files[f], &e) == PNDM_OK, "%s", e.msg);
        if (e.msg[0]) continue;
        CHECK(t.n_tensors == 6);
        static const float a[6] = {0, 1, 2, 3, 4, 5}, b[3] = {1, -2, 0.5f}, c[2] = {3, -0.25f}, v1[3] = {2, 3, 4},
                           v2[3] = {5, 6, 7}, tr[6] = {0, 3, 1, 4, 2, 5};
        check_values(&t, "a.weight", TT_F32, 2, a, 6);
        check_values(&t, "b.bias", TT_F16, 1, b, 3);
        check_values(&t, "c", TT_BF16, 1, c, 2);
        check_values(&t, "v1", TT_F32, 1, v1, 3);
        check_values(&t, "v2", TT_F32, 2, v2, 3);
        check_values(&t, "t", TT_F32, 2, tr, 6);
        const tt_tensor *x = tt_find(&t, "v1"), *y = tt_find(&t, "v2");
        if (x && y) CHECK((const char *)y->data == (const char *)x->data + 12); /* one storage, in place */
        tt_free(&t);
    }
}

/* ---- the unpickler -------------------------------------------------------------------------- */
static pndm_status parse_bytes(const char *b, size_t n, pk_doc *d, pndm_error *e) {
    return pk_parse(d, b, n, "t.pkl", NULL, e);
}

static void expect_refusal(const char *what, const char *b, size_t n, const char *needle) {
    pk_doc d;
    pndm_error e = {0};
    pndm_status s = parse_bytes(b, n, &d, &e);
    CHECK_MSG(s == PNDM_ERR_MODEL, "%s: status %d", what, s);
    CHECK_CONTAINS(e.msg, needle);
    CHECK(d.nodes == NULL);
    pk_free(&d);
}

#define EXPECT_REFUSAL(what, lit, needle) expect_refusal(what, lit, sizeof lit - 1, needle)

static void test_pickle(void) {
    pk_doc d;
    pndm_error e = {0};
    /* {'a': (1, -2, 300, 70000, 2^40, True, None, 'xy', 1.5)} with memo */
    static const char p1[] = "\x80\x02}q\x00X\x01\x00\x00\x00"
                             "aq\x01(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00"
                             "\x8a\x06\x00\x00\x00\x00\x00\x01\x88NX\x02\x00\x00\x00xyG\x3f\xf8\x00\x00\x00\x00\x00\x00"
                             "h\x01ts.";
    CHECK_MSG(parse_bytes(p1, sizeof p1 - 1, &d, &e) == PNDM_OK, "%s", e.msg);
    if (d.nodes) {
        const pk_node *root = pk_node_at(&d, d.root);
        CHECK(root->kind == PK_DICT && root->n == 2);
        const pk_node *t = pk_node_at(&d, root->items[1]);
        CHECK(pk_str_is(pk_node_at(&d, root->items[0]), "a"));
        CHECK(t->kind == PK_TUPLE && t->n == 10);
        if (t->n == 10) {
            CHECK(pk_node_at(&d, t->items[0])->v.i == 1);
            CHECK(pk_node_at(&d, t->items[1])->v.i == -2);
            CHECK(pk_node_at(&d, t->items[2])->v.i == 300);
            CHECK(pk_node_at(&d, t->items[3])->v.i == 70000);
            CHECK(pk_node_at(&d, t->items[4])->v.i == ((int64_t)1 << 40));
            CHECK(pk_node_at(&d, t->items[5])->kind == PK_BOOL && pk_node_at(&d, t->items[5])->v.i == 1);
            CHECK(pk_node_at(&d, t->items[6])->kind == PK_NONE);
            CHECK(pk_str_is(pk_node_at(&d, t->items[7]), "xy"));
            CHECK(pk_node_at(&d, t->items[8])->kind == PK_FLOAT && pk_node_at(&d, t->items[8])->v.f == 1.5);
            CHECK(pk_str_is(pk_node_at(&d, t->items[9]), "a")); /* BINGET 1 */
        }
    }
    pk_free(&d);
    /* LONG1 negative: -1 in one byte, -129 in two */
    static const char p2[] = "\x80\x02\x8a\x01\xff\x8a\x02\x7f\xff\x86.";
    CHECK(parse_bytes(p2, sizeof p2 - 1, &d, &e) == PNDM_OK);
    if (d.nodes) {
        const pk_node *t = pk_node_at(&d, d.root);
        CHECK(t->n == 2 && pk_node_at(&d, t->items[0])->v.i == -1 && pk_node_at(&d, t->items[1])->v.i == -129);
    }
    pk_free(&d);
    /* protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL of an allowed name */
    static const char p3[] = "\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00\x8c\x0b"
                             "collections\x94\x8c\x0bOrderedDict"
                             "\x94\x93\x94)R\x94.";
    CHECK_MSG(parse_bytes(p3, sizeof p3 - 1, &d, &e) == PNDM_OK, "%s", e.msg);
    if (d.nodes) CHECK(pk_node_at(&d, d.root)->kind == PK_DICT);
    pk_free(&d);
    /* a cycle (list appended to itself) is harmless */
    static const char p4[] = "\x80\x02]q\x00h\x00"
                             "a.";
    CHECK(parse_bytes(p4, sizeof p4 - 1, &d, &e) == PNDM_OK);
    pk_free(&d);

    EXPECT_REFUSAL("os.system",
                   "\x80\x02"
                   "cposix\nsystem\nX\x01\x00\x00\x00x\x85R.",
                   "global 'posix.system' is not allowed");
    EXPECT_REFUSAL("builtins.eval",
                   "\x80\x02"
                   "cbuiltins\neval\n.",
                   "global 'builtins.eval' is not allowed");
    EXPECT_REFUSAL("STACK_GLOBAL", "\x80\x04\x8c\x02os\x8c\x06system\x93.", "global 'os.system'");
    EXPECT_REFUSAL("REDUCE of a storage class",
                   "\x80\x02"
                   "ctorch\nFloatStorage\n)R.",
                   "REDUCE of torch.FloatStorage is not allowed");
    EXPECT_REFUSAL("REDUCE of a string",
                   "\x80\x02X\x01\x00\x00\x00"
                   "a)R.",
                   "REDUCE applies the string 'a'");
    EXPECT_REFUSAL("NEWOBJ of OrderedDict",
                   "\x80\x02"
                   "ccollections\nOrderedDict\n)\x81.",
                   "NEWOBJ of the global");
    EXPECT_REFUSAL("BUILD on a list", "\x80\x02]}b.", "BUILD on a list");
    EXPECT_REFUSAL("APPEND to a dict", "\x80\x02}Na.", "APPEND(S) on a dict");
    EXPECT_REFUSAL("SETITEM on a list", "\x80\x02]NNs.", "SETITEM(S) on a list");
    EXPECT_REFUSAL("protocol 5 buffer", "\x80\x05\x97.", "NEXT_BUFFER (protocol 5 out-of-band buffer)");
    EXPECT_REFUSAL("protocol 6", "\x80\x06N.", "pickle protocol 6 is not supported");
    EXPECT_REFUSAL("INST", "\x80\x02(ios\nsystem\n.", "opcode INST is not allowed");
    EXPECT_REFUSAL("unknown opcode", "\x80\x02\xff.", "unknown pickle opcode 0xff");
    EXPECT_REFUSAL("memo far away", "\x80\x02Nr\xf0\xff\xff\xff.", "memo index 4294967280 out of range");
    EXPECT_REFUSAL("memo never stored", "\x80\x02h\x05.", "memo index 5 was never stored");
    EXPECT_REFUSAL("no STOP", "\x80\x02N", "pickle ends without STOP");
    EXPECT_REFUSAL("truncated string", "\x80\x02X\xff\x00\x00\x00ab.", "truncated pickle");
    EXPECT_REFUSAL("pop empty", "\x80\x02R.", "REDUCE on an empty stack");
    EXPECT_REFUSAL("pop below MARK", "\x80\x02N(R.", "REDUCE on an empty stack");
    EXPECT_REFUSAL("TUPLE without MARK", "\x80\x02Nt.", "TUPLE without a MARK");
    /* nesting: lists 200 deep, MARKs 200 deep */
    char deep[1000];
    size_t n = 0;
    deep[n++] = '\x80', deep[n++] = 2;
    for (int i = 0; i < 200; i++) deep[n++] = ']';
    for (int i = 0; i < 199; i++) deep[n++] = 'a';
    deep[n++] = '.';
    expect_refusal("deep lists", deep, n, "nested deeper than 100 levels");
    n = 2;
    for (int i = 0; i < 200; i++) deep[n++] = '(';
    deep[n++] = '.';
    expect_refusal("deep MARKs", deep, n, "MARKs nested deeper than 100 levels");
    /* the offset of the refused opcode is in the message */
    EXPECT_REFUSAL("offset", "\x80\x02NNNN\xfe.", "pickle offset 6:");
}

/* ---- the zip reader ------------------------------------------------------------------------- */
static void *slurp(const char *path, size_t *n) {
    char *d = NULL;
    pndm_error e;
    if (pndm_read_file(path, 0, &d, n, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return NULL;
    }
    return d;
}

static void test_zip(void) {
    size_t n;
    unsigned char *b = slurp(CK "/model_bin_zip/diffusion_pytorch_model.bin", &n);
    CHECK(b != NULL);
    if (!b) return;
    zip_archive z;
    pndm_error e = {0};
    CHECK_MSG(zip_open(&z, b, n, "m.bin", 1, &e) == PNDM_OK, "%s", e.msg);
    CHECK(strcmp(z.prefix, "diffusion_pytorch_model/") == 0); /* torch names the folder after the file */
    const zip_entry *pkl = zip_find_in(&z, "data.pkl");
    CHECK(pkl != NULL && zip_find(&z, "diffusion_pytorch_model/data.pkl") == pkl);
    CHECK(zip_find_in(&z, "data/0") != NULL && zip_find_in(&z, "nope") == NULL);
    if (pkl) CHECK(zip_check_crc(&z, pkl, &e) == PNDM_OK);
    zip_close(&z);
    /* a flipped data byte: the CRC catches it, naming the entry */
    CHECK(zip_open(&z, b, n, "m.bin", 1, &e) == PNDM_OK);
    const zip_entry *d0 = zip_find_in(&z, "data/0");
    if (d0) {
        ((unsigned char *)d0->data)[0] ^= 1;
        CHECK(zip_check_crc(&z, d0, &e) == PNDM_ERR_MODEL);
        CHECK_CONTAINS(e.msg, "zip entry 'diffusion_pytorch_model/data/0': CRC-32");
        tt_table t;
        CHECK(pt_parse(&t, b, n, "m.bin", 1, &e) == PNDM_ERR_MODEL);
        CHECK_CONTAINS(e.msg, "the file is damaged");
        CHECK(pt_parse(&t, b, n, "m.bin", 0, &e) == PNDM_OK); /* without the CRC check it parses */
        tt_free(&t);
        ((unsigned char *)d0->data)[0] ^= 1;
    }
    zip_close(&z);
    /* truncation anywhere: refused, never a crash */
    for (size_t cut = 0; cut < n; cut += n / 97 + 1) {
        tt_table t;
        pndm_status s = pt_parse(&t, b, cut, "cut.bin", 1, &e);
        CHECK_MSG(s == PNDM_ERR_MODEL, "cut at %zu: %d", cut, s);
    }
    free(b);
    /* the CRC of "123456789" is 0xCBF43926 */
    CHECK(zip_crc32(0, "123456789", 9) == 0xCBF43926u);
    CHECK(zip_crc32(zip_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
    CHECK(zip_crc32_portable(0, "123456789", 9) == 0xCBF43926u);
    /* the carry-less multiplication path agrees with the tables: every length to 1100 at every
     * alignment, and split anywhere */
    unsigned char *r = malloc(1200);
    uint32_t x = 12345;
    for (int i = 0; i < 1200; i++) r[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 23);
    int bad = 0;
    for (size_t len = 0; len <= 1100 && !bad; len++)
        for (size_t off = 0; off < 16 && !bad; off++) {
            uint32_t want = zip_crc32_portable(0, r + off, len);
            if (zip_crc32(0, r + off, len) != want) bad = 1;
            size_t cut = len / 3;
            if (zip_crc32(zip_crc32(0, r + off, cut), r + off + cut, len - cut) != want) bad = 2;
        }
    CHECK_MSG(!bad, "zip_crc32 differs from the table path (%d)", bad);
    free(r);
}

/* ---- weights: what a non-weights file looks like ------------------------------------------- */
static void expect_open_fails(const char *file, pndm_status code, const char *needle) {
    tt_table t;
    pndm_error e = {0};
    char p[600];
    snprintf(p, sizeof p, CK "/hostile/%s", file);
    pndm_status s = wt_open(&t, p, &e);
    CHECK_MSG(s == code, "%s: status %d (%s)", file, s, e.msg);
    CHECK_CONTAINS(e.msg, needle);
    CHECK_CONTAINS(e.msg, file);
    CHECK(t.n_tensors == 0);
    tt_free(&t);
}

static void test_hostile_files(void) {
    expect_open_fails("image.png", PNDM_ERR_MODEL, "not a safetensors file: it starts like a PNG image");
    expect_open_fails("notes.txt", PNDM_ERR_MODEL, "it starts like a text file ('these are not weights')");
    expect_open_fails("lfs_pointer.safetensors", PNDM_ERR_MODEL, "a Git LFS pointer");
    expect_open_fails("random.safetensors", PNDM_ERR_MODEL, "does not look like a safetensors or PyTorch file");
    expect_open_fails("zip_not_torch.bin", PNDM_ERR_MODEL, "a zip archive, but not a PyTorch checkpoint");
    expect_open_fails("reduce_os_system.bin", PNDM_ERR_MODEL, "global 'posix.system' is not allowed");
    expect_open_fails("reduce_eval.bin", PNDM_ERR_MODEL, "global 'builtins.eval' is not allowed");
    expect_open_fails("reduce_popen.bin", PNDM_ERR_MODEL, "global 'subprocess.Popen' is not allowed");
    expect_open_fails("reduce_stack_global_p4.bin", PNDM_ERR_MODEL, "global 'posix.system' is not allowed");
    expect_open_fails("legacy_os_system.bin", PNDM_ERR_MODEL, "global 'posix.system' is not allowed");
    expect_open_fails("global_numpy.bin", PNDM_ERR_MODEL, "global 'numpy.core.multiarray._reconstruct'");
    expect_open_fails("missing_data.bin", PNDM_ERR_MODEL, "storage record 'archive/data/7' is missing");
    expect_open_fails("view_past_storage.bin", PNDM_ERR_MODEL, "reaches element 5, past the 4 of its storage");
    expect_open_fails("stride_past_storage.bin", PNDM_ERR_MODEL, "reaches element 4, past the 4 of its storage");
    expect_open_fails("negative_dim.bin", PNDM_ERR_MODEL, "size[0] = -1 is negative");
    expect_open_fails("huge_dims.bin", PNDM_ERR_MODEL, "tensor 'conv_in.bias': size and stride overflow 64 bits");
    expect_open_fails("storage_size_mismatch.bin", PNDM_ERR_MODEL, "holds 16 bytes, but 8 elements of float32 need 32");
    expect_open_fails("float64.bin", PNDM_ERR_MODEL, "dtype float64 (torch.DoubleStorage) is not supported");
    expect_open_fails("deflated.bin", PNDM_ERR_MODEL, "is compressed (method 8, deflate)");
    expect_open_fails("truncated.bin", PNDM_ERR_MODEL, "end-of-central-directory");
    expect_open_fails("cd_outside.bin", PNDM_ERR_MODEL, "central directory");
    expect_open_fails("encrypted.bin", PNDM_ERR_MODEL, "is encrypted");
    expect_open_fails("outside_prefix.bin", PNDM_ERR_MODEL, "zip entry 'other/evil': is outside the archive folder");
    expect_open_fails("overlap.bin", PNDM_ERR_MODEL, "overlaps entry");
    expect_open_fails("deep_nesting.bin", PNDM_ERR_MODEL, "nested deeper than 100 levels");
    expect_open_fails("deep_marks.bin", PNDM_ERR_MODEL, "MARKs nested deeper than 100 levels");
    expect_open_fails("unbounded_memo.bin", PNDM_ERR_MODEL, "memo index 4294967280 out of range");
    expect_open_fails("memo_flood.bin", PNDM_ERR_MODEL, "out of range");
    expect_open_fails("protocol5_buffer.bin", PNDM_ERR_MODEL, "protocol 5 out-of-band buffer");
    expect_open_fails("build_on_tensor.bin", PNDM_ERR_MODEL, "BUILD on a call of torch._utils._rebuild_tensor_v2");
    expect_open_fails("reduce_storage_class.bin", PNDM_ERR_MODEL, "REDUCE of torch.FloatStorage is not allowed");
    expect_open_fails("reduce_string.bin", PNDM_ERR_MODEL, "REDUCE applies the string 'os.system'");
    expect_open_fails("not_a_dict.bin", PNDM_ERR_MODEL, "holds a list of 0 items, not a state dict");
    expect_open_fails("no_stop.bin", PNDM_ERR_MODEL, "without STOP");
    expect_open_fails("cyclic_list.bin", PNDM_ERR_MODEL, "not a state dict");
    tt_table t;
    pndm_error e = {0};
    CHECK_MSG(wt_open(&t, CK "/hostile/good.bin", &e) == PNDM_OK, "%s", e.msg);
    CHECK(t.n_tensors == 1 && tt_find(&t, "conv_in.bias") && tt_find(&t, "conv_in.bias")->count == 4);
    tt_free(&t);
}

/* ---- key renames ----------------------------------------------------------------------------- */
static void test_renames(void) {
    tt_table t;
    pndm_error e = {0};
    static const float v[4] = {1, 2, 3, 4};
    const int64_t sh[1] = {4};
    const char *names[] = {"down_blocks.1.attentions.0.query.weight", "mid_block.attentions.0.proj_attn.bias",
                           "up_blocks.12.attentions.3.value.bias",    "down_blocks.1.resnets.0.query.weight",
                           "mid_block.attentions.0.key.weightx",      "x.attentions.0.key.weight"};
    tt_init(&t, "r.safetensors", &e);
    for (int i = 0; i < 6; i++) tt_add(&t, names[i], TT_F32, 1, sh, v, NULL, &e);
    CHECK(tt_finish(&t, &e) == PNDM_OK);
    CHECK_MSG(model_convert_keys(&t, &e) == PNDM_OK, "%s", e.msg);
    CHECK(tt_find(&t, "down_blocks.1.attentions.0.to_q.weight") != NULL);
    CHECK(tt_find(&t, "mid_block.attentions.0.to_out.0.bias") != NULL);
    CHECK(tt_find(&t, "up_blocks.12.attentions.3.to_v.bias") != NULL);
    CHECK(tt_find(&t, "down_blocks.1.resnets.0.query.weight") != NULL); /* not an attention block */
    CHECK(tt_find(&t, "mid_block.attentions.0.key.weightx") != NULL);
    CHECK(tt_find(&t, "x.attentions.0.key.weight") != NULL);
    CHECK(tt_find(&t, "down_blocks.1.attentions.0.query.weight") == NULL);
    tt_free(&t);
    /* both spellings */
    tt_init(&t, "both.safetensors", &e);
    tt_add(&t, "mid_block.attentions.0.to_k.weight", TT_F32, 1, sh, v, NULL, &e);
    tt_add(&t, "mid_block.attentions.0.key.weight", TT_F32, 1, sh, v, NULL, &e);
    CHECK(tt_finish(&t, &e) == PNDM_OK);
    CHECK(model_convert_keys(&t, &e) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(e.msg,
                   "both.safetensors: tensor 'mid_block.attentions.0.to_k.weight' is there under its old "
                   "name 'mid_block.attentions.0.key.weight' too");
    tt_free(&t);
}

/* ---- layouts ---------------------------------------------------------------------------------- */
static char g_tmp[256];

static void unset_hub_env(void) {
    unsetenv("HF_HUB_CACHE");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
}

static void check_cache_dir(const char *want) {
    char *c = lay_hub_cache_dir();
    CHECK_MSG(c && strcmp(c, want) == 0, "cache dir '%s', expected '%s'", c ? c : "(null)", want);
    free(c);
}

static void test_hub_env(void) {
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    unset_hub_env();
    setenv("HOME", "/h", 1);
    check_cache_dir("/h/.cache/huggingface/hub");
    setenv("XDG_CACHE_HOME", "/x", 1);
    check_cache_dir("/x/huggingface/hub");
    setenv("HF_HOME", "~/hf", 1);
    check_cache_dir("/h/hf/hub");
    setenv("PNDM_TEST_VAR", "v", 1);
    setenv("HUGGINGFACE_HUB_CACHE", "/a/$PNDM_TEST_VAR/${PNDM_TEST_VAR}/$NOT_SET_VAR_X", 1);
    check_cache_dir("/a/v/v/$NOT_SET_VAR_X");
    setenv("HF_HUB_CACHE", "/c", 1);
    check_cache_dir("/c");
    unset_hub_env();
    if (home)
        setenv("HOME", home, 1);
    else
        unsetenv("HOME");
    free(home);
}

static void expect_layout_error(const char *spec, const char *rev, const char *variant, pndm_status code,
                                const char *needle) {
    lay_model L;
    pndm_error e = {0};
    pndm_status s = lay_resolve(spec, rev, variant, &L, &e);
    CHECK_MSG(s == code, "%s: status %d, expected %d (%s)", spec, s, code, e.msg);
    CHECK_CONTAINS(e.msg, needle);
    lay_free(&L);
}

static void test_layouts(void) {
    const char *repo = CK "/hub/models--pndm-test--tiny-ddpm";
    lay_model L;
    pndm_error e = {0};
    unset_hub_env();
    setenv("HF_HUB_CACHE", CK "/hub", 1);
    /* a Hub id: refs/main -> the root-level layout of snapshot A (safetensors preferred) */
    CHECK_MSG(lay_resolve("pndm-test/tiny-ddpm", NULL, NULL, &L, &e) == PNDM_OK, "%s", e.msg);
    CHECK(L.weights &&
          strstr(L.weights,
                 "/snapshots/0e7459caaeb58816fad579d306c4a3f5bfe649be/"
                 "diffusion_pytorch_model.safetensors"));
    CHECK(L.config && strstr(L.config, "0e7459caaeb58816fad579d306c4a3f5bfe649be/config.json"));
    CHECK(L.scheduler && strstr(L.scheduler, "0e7459caaeb58816fad579d306c4a3f5bfe649be/scheduler_config.json"));
    CHECK(L.root && strstr(L.root, "models--pndm-test--tiny-ddpm") && !L.sharded && !L.given_file);
    lay_free(&L);
    /* revision v2 = commit B: unet/ + scheduler/, fp16 variant only */
    CHECK(lay_resolve("pndm-test/tiny-ddpm", "v2", "fp16", &L, &e) == PNDM_OK);
    CHECK(L.weights &&
          strstr(L.weights,
                 "3199c74571bc861ae59661da8714c696b27a2ea2/unet/"
                 "diffusion_pytorch_model.fp16.safetensors"));
    CHECK(L.scheduler && strstr(L.scheduler, "/scheduler/scheduler_config.json"));
    lay_free(&L);
    expect_layout_error("pndm-test/tiny-ddpm", "v2", NULL, PNDM_ERR_MODEL,
                        "only variants: fp16 (choose one with --variant)");
    expect_layout_error("pndm-test/tiny-ddpm", "v2", "ema", PNDM_ERR_MODEL, "no weights for variant 'ema'");
    expect_layout_error("pndm-test/tiny-ddpm", "nope", NULL, PNDM_ERR_MODEL,
                        "revision 'nope' is not in the cache (no refs/nope; cached refs: main, v2)");
    expect_layout_error("pndm-test/tiny-ddpm", "0123456789012345678901234567890123456789", NULL, PNDM_ERR_MODEL,
                        "snapshot 0123456789012345678901234567890123456789 (revision");
    expect_layout_error("pndm-test/tiny-ddpm", "../../x", NULL, PNDM_ERR_USAGE, "is not a branch name or commit");
    expect_layout_error("pndm-test/absent", NULL, NULL, PNDM_ERR_MODEL, "huggingface-cli download pndm-test/absent");
    expect_layout_error("no/such/path", NULL, NULL, PNDM_ERR_IO, "cannot open");
    expect_layout_error("absent-single-name", NULL, NULL, PNDM_ERR_IO, "cannot open");
    /* the models--* folder and a snapshot folder given as paths */
    CHECK(lay_resolve(repo, NULL, NULL, &L, &e) == PNDM_OK && L.root != NULL);
    lay_free(&L);
    CHECK(lay_resolve(repo, "3199c74571bc861ae59661da8714c696b27a2ea2", "fp16", &L, &e) == PNDM_OK);
    lay_free(&L);
    CHECK(lay_resolve(CK "/hub/models--pndm-test--tiny-ddpm/snapshots/0e7459caaeb58816fad579d306c4a3f5bfe649be", NULL,
                      NULL, &L, &e) == PNDM_OK);
    CHECK(L.root && strstr(L.root, "models--pndm-test--tiny-ddpm"));
    lay_free(&L);
    expect_layout_error(CK "/model_bin_zip", "main", NULL, PNDM_ERR_USAGE, "is a local path, not a Hub id");
    expect_layout_error(CK "/model_bin_zip/diffusion_pytorch_model.bin", NULL, "fp16", PNDM_ERR_USAGE,
                        "is a weights file");
    expect_layout_error(CK "/model_bin_zip", NULL, "a/b", PNDM_ERR_USAGE, "variant 'a/b' is not a name");
    /* model folders: .bin, shards, variants */
    CHECK(lay_resolve(CK "/model_sharded_st", NULL, NULL, &L, &e) == PNDM_OK && L.sharded && L.scheduler && !L.root);
    lay_free(&L);
    CHECK(lay_resolve(CK "/model_bin_legacy", NULL, NULL, &L, &e) == PNDM_OK);
    CHECK(L.weights && strstr(L.weights, "model_bin_legacy/diffusion_pytorch_model.bin"));
    lay_free(&L);
    CHECK(lay_resolve(CK "/pipe_variant", NULL, "fp16", &L, &e) == PNDM_OK);
    CHECK(L.weights && strstr(L.weights, "unet/diffusion_pytorch_model.fp16.safetensors"));
    CHECK(L.scheduler && strstr(L.scheduler, "pipe_variant/scheduler/scheduler_config.json"));
    lay_free(&L);
    CHECK(lay_resolve(CK "/pipe_variant/unet", NULL, NULL, &L, &e) == PNDM_OK);
    CHECK(L.scheduler && strstr(L.scheduler, "/../scheduler/scheduler_config.json"));
    lay_free(&L);

    /* a temporary cache: a blob symlink leaving the repo folder, a bad ref, a folder with one file */
    char cmd[1200];
    snprintf(g_tmp, sizeof g_tmp, "/tmp/pndm_test_ckpt_XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL);
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; mkdir -p hub/models--o--evil/refs hub/models--o--evil/snapshots/c1 one empty "
             "hub/models--o--bad/refs hub/models--o--bad/snapshots; "
             "printf c1 >hub/models--o--evil/refs/main; printf '../../x' >hub/models--o--bad/refs/main; "
             "cp '%s/model_bin_zip/config.json' outside_config.json; "
             "ln -s ../../../../outside_config.json hub/models--o--evil/snapshots/c1/config.json; "
             "cp '%s/model_bin_zip/diffusion_pytorch_model.bin' hub/models--o--evil/snapshots/c1/; "
             "cp '%s/model_bin_zip/diffusion_pytorch_model.bin' one/weights.safetensors",
             g_tmp, CK, CK, CK);
    CHECK(system(cmd) == 0);
    char p[600];
    snprintf(p, sizeof p, "%s/hub", g_tmp);
    setenv("HF_HUB_CACHE", p, 1);
    expect_layout_error("o/evil", NULL, NULL, PNDM_ERR_MODEL, "outside the Hub cache folder");
    expect_layout_error("o/bad", NULL, NULL, PNDM_ERR_MODEL, "refs/main holds '../../x', not a commit hash");
    snprintf(p, sizeof p, "%s/one", g_tmp);
    expect_layout_error(p, NULL, NULL, PNDM_ERR_MODEL, "it holds one weights file, weights.safetensors");
    snprintf(p, sizeof p, "%s/empty", g_tmp);
    expect_layout_error(p, NULL, NULL, PNDM_ERR_MODEL,
                        "not a model folder (no config.json or model_index.json); found: nothing");
    snprintf(p, sizeof p, "%s/hub/models--o--evil/snapshots/c1", g_tmp);
    expect_layout_error(p, NULL, NULL, PNDM_ERR_MODEL, "outside the Hub cache folder");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    CHECK(system(cmd) == 0);
    unset_hub_env();
}

/* ---- whole models: every layout loads, with the same forward as the safetensors model -------- */
static void test_models(void) {
    pndm_error e = {0};
    pndm_model *ref = NULL, *m = NULL;
    CHECK_MSG(pndm_model_load(CK "/pipe_variant", &ref, &e) == PNDM_OK, "%s", e.msg);
    if (!ref) return;
    const size_t n = 2 * 3 * 8 * 8;
    float x[2 * 3 * 8 * 8], y0[2 * 3 * 8 * 8], y[2 * 3 * 8 * 8], t[2] = {10, 900};
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(i * 37 % 101) - 50) / 25.0f;
    CHECK(pndm_unet_forward(ref, x, 2, 8, 8, t, y0, 1, &e) == PNDM_OK);
    const char *same[] = {CK "/model_bin_zip",
                          CK "/model_bin_legacy",
                          CK "/model_bin_views",
                          CK "/model_bin_zip64",
                          CK "/model_sharded_st",
                          CK "/model_sharded_bin",
                          CK "/model_bin_zip/diffusion_pytorch_model.bin",
                          CK "/hub/models--pndm-test--tiny-ddpm"};
    for (size_t k = 0; k < sizeof same / sizeof same[0]; k++) {
        m = NULL;
        CHECK_MSG(pndm_model_load(same[k], &m, &e) == PNDM_OK, "%s: %s", same[k], e.msg);
        if (!m) continue;
        CHECK(pndm_unet_forward(m, x, 2, 8, 8, t, y, 1, &e) == PNDM_OK);
        CHECK_MSG(memcmp(y, y0, sizeof y) == 0, "%s: forward differs from the safetensors model", same[k]);
        CHECK_MSG(model_scheduler_json(m, NULL) != NULL, "%s: no scheduler config found", same[k]);
        pndm_model_free(m);
    }
    pndm_model_params p = pndm_model_default_params();
    p.variant = "fp16";
    m = NULL;
    CHECK_MSG(pndm_model_load_ex(CK "/pipe_variant", &p, &m, &e) == PNDM_OK, "%s", e.msg);
    if (m) {
        CHECK(pndm_unet_forward(m, x, 2, 8, 8, t, y, 1, &e) == PNDM_OK);
        double md = test_max_abs_diff(y, y0, n);
        CHECK_MSG(md > 0 && md < 0.05 * (1 + test_max_abs(y0, n)), "fp16 variant differs by %g", md);
        pndm_model_free(m);
    }
    pndm_model_free(ref);
    /* the hostile ones through the whole loader: refused, nothing returned */
    m = (pndm_model *)1;
    CHECK(pndm_model_load(CK "/hostile/reduce_os_system.bin", &m, &e) == PNDM_ERR_MODEL && m == NULL);
    m = NULL;
    /* a file holding one tensor loads, then the binder names what is missing */
    CHECK(pndm_model_load(CK "/hostile/good.bin", &m, &e) == PNDM_ERR_MODEL && m == NULL);
    CHECK_CONTAINS(e.msg, "missing tensor");
}

static int compare(const char *a, const char *b, double rtol, double atol) {
    pndm_npy x, y;
    float *fx = test_npy_f32(a, NULL, &x), *fy = fx ? test_npy_f32(b, NULL, &y) : NULL;
    int same = fy && x.ndim == y.ndim && x.count == y.count;
    for (int d = 0; same && d < x.ndim; d++) same = x.shape[d] == y.shape[d];
    if (!same) {
        if (fy) fprintf(stderr, "%s and %s: shapes differ\n", a, b);
        free(fx);
        free(fy);
        return 1;
    }
    double md = test_max_abs_diff(fx, fy, x.count), mr = test_max_abs(fy, x.count), lim = rtol * mr + atol;
    printf("max|err| %.3g  max|ref| %.4g  rel %.3g  limit %.3g\n", md, mr, mr > 0 ? md / mr : md, lim);
    free(fx);
    free(fy);
    return md <= lim ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "--compare") == 0) return compare(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
    test_formats();
    test_small();
    test_pickle();
    test_zip();
    test_hostile_files();
    test_renames();
    test_hub_env();
    test_layouts();
    test_models();
    return TEST_SUMMARY();
}
