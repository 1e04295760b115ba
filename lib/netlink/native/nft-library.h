/* nftables commands in-process through libnftables (nft-library.c). */
#ifndef TWILL_NFT_LIBRARY_H
#define TWILL_NFT_LIBRARY_H
#include <node_api.h>

/* Adds nftAvailable and nftRun to the addon's exports. */
void nft_library_init(napi_env env, napi_value exports);

#endif
