/* Reproducer for two bugs in src/unet.c's workspace planning (fwd_plan / lm_attn), found by
 * fuzz_unet_config. Not built by ctest (the config parser now refuses both sizes, so the CLI
 * cannot reach them); build by hand against the library:
 *   cc -Iinclude -Isrc tests/fuzz/repro/unet_workspace_repro.c build/libpndm.a \
 *      $(pkg-config --libs libpng libcjson openblas) -lpthread -lm -o /tmp/repro && /tmp/repro
 * 1. H, W not divisible by 2^(levels-1): (H >> lvl) * (W >> lvl) is 0 at the deepest level,
 *    op_attention_ws_floats(0) divides by zero (SIGFPE).
 * 2. H = W = 65536: (H >> lvl) * (W >> lvl) overflows int (2^32), same division by zero.
 * Expected: unet_workspace_bytes returns SIZE_MAX (as documented for overflow) or the callers
 * check divisibility first. */
#include "unet.h"
#include "unet_config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static size_t ws(const char *json, int H) {
    unet_config cfg;
    unet_net net;
    pndm_error err;
    if (unet_config_parse(json, strlen(json), "repro", &cfg, &err) || unet_build(&net, &cfg, "repro", &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    size_t n = unet_workspace_bytes(&net, 1, H, H, 1);
    unet_free(&net);
    return n;
}

int main(void) {
    /* two levels, attention: 1x1 leaves 0x0 at level 1 */
    const char *two = "{\"sample_size\": 8, \"block_out_channels\": [4, 4], \"norm_num_groups\": 2,"
                      " \"down_block_types\": [\"DownBlock2D\", \"AttnDownBlock2D\"],"
                      " \"up_block_types\": [\"AttnUpBlock2D\", \"UpBlock2D\"], \"attention_head_dim\": 4}";
    /* one level, mid-block attention at full size: 65536 * 65536 overflows int */
    const char *one = "{\"sample_size\": 8, \"block_out_channels\": [4], \"norm_num_groups\": 2,"
                      " \"down_block_types\": [\"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"], \"attention_head_dim\": 4}";
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("two levels, 8x8: %zu bytes\n", ws(two, 8));
    printf("one level, 16384x16384: %zu bytes\n", ws(one, 16384));
    printf("one level, 65536x65536: %zu bytes\n", ws(one, 65536)); /* bug 2: SIGFPE */
    printf("two levels, 1x1: %zu bytes\n", ws(two, 1));           /* bug 1: SIGFPE */
    return 0;
}
