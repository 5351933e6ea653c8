// std::vector storage that starts on a cache line, for the run-time caches the vector kernels stream.
//
// glibc hands out large blocks 16 bytes past a page boundary, so a plain std::vector of a weight's
// bits puts every 64-byte vector load across two cache lines: twice the lines touched per load, and
// prefetches one line short of each block.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace sc {

template <class T>
struct CacheLineAllocator {
    using value_type = T;
    static constexpr std::align_val_t kAlignment{64};
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlignment); }
    template <class U>
    bool operator==(const CacheLineAllocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const CacheLineAllocator<U>&) const noexcept { return false; }
};

template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace sc
