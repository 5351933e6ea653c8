// Running loop bodies inside OpenMP regions without letting exceptions escape them: an exception
// that leaves a parallel region calls std::terminate, so the first one is kept and rethrown after
// the region ends (e.g. std::bad_alloc becomes Python's MemoryError instead of an abort).
#pragma once

#include <exception>
#include <mutex>

namespace sc {

class ExceptionCollector {
public:
    template <class Fn>
    void run(Fn&& fn) noexcept {
        try {
            fn();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_) first_ = std::current_exception();
        }
    }
    void rethrow() const {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::mutex mutex_;
    std::exception_ptr first_;
};

}  // namespace sc
