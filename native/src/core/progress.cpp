#include "core/progress.h"

#include "core/error.h"

namespace fq {

void Progress::check_cancelled() const {
    if (cancel_ && cancel_->cancelled.load(std::memory_order_relaxed))
        FQ_FAIL(FQ_STATUS_CANCELLED, "cancelled");
}

void Progress::step(const char *stage, int64_t done, int64_t total) const {
    check_cancelled();
    if (fn_ && fn_(user_data_, stage, done, total) != 0)
        FQ_FAIL(FQ_STATUS_CANCELLED, "cancelled by the progress callback during %s", stage);
}

}  // namespace fq
