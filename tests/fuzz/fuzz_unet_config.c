/* Fuzz target: UNet2DModel config.json (unet_config_parse), then the layer plan that the loader
 * builds from an accepted config (unet_build) and its workspace estimate.
 * Properties: no crash, no unbounded allocation; refusals carry a message. */
#include "fuzz.h"
#include "unet.h"
#include "unet_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unet_config cfg;
    pndm_error err = {0};
    pndm_status st = unet_config_parse((const char *)data, size, "fuzz/config.json", &cfg, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        return 0;
    }
    FUZZ_CHECK(cfg.n_levels >= 1 && cfg.n_levels <= UNET_MAX_LEVELS);
    FUZZ_CHECK(cfg.sample_size >= 1 && cfg.sample_size <= UNET_MAX_SAMPLE);
    for (int i = 0; i < cfg.n_levels; i++)
        FUZZ_CHECK(cfg.block_out_channels[i] >= 1 && cfg.block_out_channels[i] <= UNET_MAX_CHANNELS);
    unet_net net;
    st = unet_build(&net, &cfg, "fuzz/config.json", &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        return 0;
    }
    FUZZ_CHECK(net.n_params > 0);
    for (int i = 0; i < net.n_params; i++) FUZZ_CHECK(net.params[i].name && net.params[i].slot);
    (void)unet_workspace_bytes(&net, 1, cfg.sample_size, cfg.sample_size, 1);
    (void)unet_workspace_bytes(&net, 1 << 20, cfg.sample_size, cfg.sample_size, 256);
    unet_free(&net);
    return 0;
}
