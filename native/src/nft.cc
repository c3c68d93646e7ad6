#include "nft.h"

#include <nftables/libnftables.h>

#include <memory>
#include <mutex>

namespace weir {

namespace {
// libnftables keeps a little process-wide state (GMP allocator hooks, the
// lazily built symbol tables of older releases). Applies take a millisecond,
// so serialising them costs nothing measurable and removes the question.
std::mutex g_nft_mutex;

struct CtxDeleter {
  void operator()(nft_ctx* ctx) const { nft_ctx_free(ctx); }
};
}  // namespace

std::optional<Failure> NftRun(const std::string& script, const NftOptions& options, std::string* output) {
  std::lock_guard<std::mutex> lock(g_nft_mutex);
  std::unique_ptr<nft_ctx, CtxDeleter> ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) return Failure{"nft_ctx_new failed", "ENFT"};
  if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
    return Failure{"libnftables: cannot buffer output", "ENFT"};
  }
  if (options.json) nft_ctx_output_set_flags(ctx.get(), nft_ctx_output_get_flags(ctx.get()) | NFT_CTX_OUTPUT_JSON);
  if (options.check) nft_ctx_set_dry_run(ctx.get(), true);

  int rc = nft_run_cmd_from_buffer(ctx.get(), script.c_str());
  const char* out = nft_ctx_get_output_buffer(ctx.get());
  const char* err = nft_ctx_get_error_buffer(ctx.get());
  if (rc != 0) {
    std::string message = err != nullptr ? err : "";
    if (message.empty()) message = "nft: command failed without an error message";
    return Failure{message, "ENFT"};
  }
  *output = out != nullptr ? out : "";
  return std::nullopt;
}

}  // namespace weir
