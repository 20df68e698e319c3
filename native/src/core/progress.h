// Progress reporting and cancellation for long operations. fq_cancel_token (the C handle) is an atomic flag that
// any thread may set; Progress polls it and the user's callback between steps and throws FQ_STATUS_CANCELLED.
#pragma once

#include <atomic>
#include <cstdint>

#include "flatquant.h"

struct fq_cancel_token {
    std::atomic<bool> cancelled{false};
};

namespace fq {

class Progress {
  public:
    Progress() = default;
    Progress(fq_progress_fn fn, void *user_data, const fq_cancel_token *cancel)
        : fn_(fn), user_data_(user_data), cancel_(cancel) {}

    // Reports done/total of stage; throws fq::Error(CANCELLED) when cancellation was requested.
    void step(const char *stage, int64_t done, int64_t total) const;
    // Throws when cancellation was requested, without calling the callback.
    void check_cancelled() const;

  private:
    fq_progress_fn fn_ = nullptr;
    void *user_data_ = nullptr;
    const fq_cancel_token *cancel_ = nullptr;
};

}  // namespace fq
