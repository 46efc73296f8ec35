// Host memory: how the process's malloc serves libtorch, and a cache of large buffers.
#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>
#include <c10/core/impl/alloc_cpu.h>
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "shim.h"

namespace {

// glibc gives every OS thread that calls malloc an arena of its own (up to 8 per core),
// and memory freed into one arena is never reused by another. The Go runtime calls the
// shim from whichever OS thread runs the goroutine, so one model stage spreads its
// tensors over many arenas: measured on `capfilt run`, a peak of 9.3 GB with the default
// and 5.8 GB with one arena, which was also faster (0.79x the wall time: fewer page
// faults). A user's own MALLOC_ARENA_MAX wins.
int g_arenas = 0;

#if TORCH_VERSION_MAJOR < 2
#define CT_LARGE_BUFFER_CACHE 1
#endif

#ifdef CT_LARGE_BUFFER_CACHE
// LargeBufferCache keeps freed tensor buffers of 1 MiB and more mapped, to hand them out
// again for the same size. A forward pass asks for the same few sizes layer after layer
// (a ViT-B layer at batch 8: 14, 42, 57 and 128 MB), and every fresh mapping costs a
// page fault and a zeroed page per 4 KiB when first written: measured, about 15% of a ViT
// forward's CPU time. The cache never raises the peak: a buffer is kept only while the
// live buffers plus the kept ones stay within the most that was ever live at once, so
// what a pass without the cache would have touched at its peak bounds what it holds.
// (glibc's malloc cannot do this for these sizes: it maps anything over its 32 MiB
// threshold afresh and unmaps it on free.)
class LargeBufferCache final : public c10::Allocator {
 public:
  static constexpr size_t kMin = size_t(1) << 20;
  static constexpr size_t kHuge = size_t(32) << 20;  // from here on, in huge pages
  static constexpr size_t kHugePage = size_t(2) << 20;

  c10::DataPtr allocate(size_t n) const override {
    void *p = n < kMin ? c10::alloc_cpu(n) : self().take(rounded(n));
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }

  // One deleter for both kinds (raw_allocate's callers, oneDNN among them, need one).
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  static LargeBufferCache &self() {
    static LargeBufferCache *c = new LargeBufferCache;  // outlives every tensor
    return *c;
  }

  struct Stats {
    int64_t live, cached, peak_live, hits, misses;
  };
  Stats stats() {
    std::lock_guard<std::mutex> g(mu_);
    return {int64_t(live_), int64_t(cached_), int64_t(peak_live_), hits_, misses_};
  }

  void dropKept() {
    std::lock_guard<std::mutex> g(mu_);
    while (!lru_.empty()) evictOldest();
  }

 private:
  struct Block {
    void *p;
    size_t size;
  };

  // Sizes are rounded to whole pages, and huge ones to whole huge pages (rounding up by
  // at most 6%), where the kernel can back them with 2 MiB pages: 512 times fewer faults.
  static size_t rounded(size_t n) {
    size_t unit = n >= kHuge ? kHugePage : 4096;
    return (n + unit - 1) / unit * unit;
  }

  static void release(void *p) {
    if (!self().give(p)) c10::free_cpu(p);
  }

  void *take(size_t size) {
    {
      std::lock_guard<std::mutex> g(mu_);
      // The smallest kept buffer that fits and wastes at most a quarter of itself.
      auto best = lru_.end();
      for (auto it = lru_.begin(); it != lru_.end(); ++it)
        if (it->size >= size && it->size - size <= it->size / 4 && (best == lru_.end() || it->size < best->size)) best = it;
      if (best != lru_.end()) {
        void *p = best->p;
        size_t got = best->size;
        cached_ -= got;
        lru_.erase(best);
        noteLive(p, got);
        hits_++;
        return p;
      }
      misses_++;
      // Make room: what is kept plus what is live never exceeds the largest live set.
      while (!lru_.empty() && live_ + cached_ + size > limit(size)) evictOldest();
    }
    void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    if (size >= kHuge) madvise(p, size, MADV_HUGEPAGE);  // where THP is "madvise", as here
    std::lock_guard<std::mutex> g(mu_);
    noteLive(p, size);
    return p;
  }

  // give takes back a buffer of the cache's; false if p is not one.
  bool give(void *p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return false;
    size_t size = it->second;
    sizes_.erase(it);
    live_ -= size;
    largest_ = std::max(largest_, size);
    lru_.push_back({p, size});
    cached_ += size;
    return true;
  }

  // What live and kept buffers may add up to: the most ever live, plus two buffers of the
  // largest size ever freed (weights, never freed, do not count), so that a pass alternating between two working sets (a ViT layer's
  // attention scores, then its MLP) keeps both instead of remapping one of them each time.
  size_t limit(size_t size) const { return std::max(peak_live_, live_ + size) + 2 * largest_; }

  void noteLive(void *p, size_t size) {
    sizes_[p] = size;
    live_ += size;
    peak_live_ = std::max(peak_live_, live_);
  }

  void evictOldest() {
    Block b = lru_.front();
    lru_.erase(lru_.begin());
    cached_ -= b.size;
    munmap(b.p, b.size);
  }

  std::mutex mu_;
  std::map<void *, size_t> sizes_;  // live buffers
  std::vector<Block> lru_;          // kept buffers, oldest first
  size_t live_ = 0, cached_ = 0, peak_live_ = 0, largest_ = 0;  // largest_: of the freed
  int64_t hits_ = 0, misses_ = 0;
};
#endif

// Threads per op class. Matmuls run on OpenBLAS's own pool (every CPU); libtorch's other
// ops on its OpenMP pool. One OpenMP thread is right for the many small ops of a decoding
// step: with two, libgomp's idle thread spins between them and decoding took 3x the CPU
// time (measured: captioning a batch of 8 at base size, 23.8 vs 7.0 CPU-seconds). But the
// big elementwise ops of an encoder pass (a ViT-B layer at batch 8: softmax over 128 MB of
// scores, GELU over 57 MB, LayerNorm and residuals over 14 MB) run 1.6-1.8x faster on two
// threads (measured right after a matmul, as they run), and the second CPU would otherwise
// only be spun by OpenBLAS's idle thread. So ops over at least kBulkElements elements get
// the bulk count, the others keep the intra-op count.
std::atomic<int> g_bulk_threads{0};  // 0 or 1: no bulk class
using omp_set_fn = void (*)(int);
using omp_get_fn = int (*)();
omp_set_fn g_omp_set = nullptr;
omp_get_fn g_omp_get = nullptr;

struct HostMemorySetup {
  HostMemorySetup() {
    if (std::getenv("MALLOC_ARENA_MAX") == nullptr && mallopt(M_ARENA_MAX, 1) == 1) g_arenas = 1;
    // libtorch's OpenMP runtime: the per-thread count at::parallel_for reads.
    g_omp_set = reinterpret_cast<omp_set_fn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    g_omp_get = reinterpret_cast<omp_get_fn>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
#ifdef CT_LARGE_BUFFER_CACHE
    c10::SetCPUAllocator(&LargeBufferCache::self(), /*priority=*/1);
#endif
  }
};

// A static initializer runs when the shim is loaded, before the Go runtime starts its
// threads and before libtorch allocates a tensor.
HostMemorySetup g_host_memory_setup;

}  // namespace

namespace ct {

BulkThreads::BulkThreads(int64_t elements) {
  int n = g_bulk_threads.load(std::memory_order_relaxed);
  if (n <= 1 || elements < kBulkElements || !g_omp_set || !g_omp_get) return;
  int cur = g_omp_get();
  if (cur >= n) return;
  g_omp_set(n);
  restore_ = cur;
}

BulkThreads::~BulkThreads() {
  if (restore_ > 0) g_omp_set(restore_);
}

}  // namespace ct

extern "C" {

void ct_set_bulk_threads(int n) { g_bulk_threads.store(n < 0 ? 0 : n); }

int ct_get_bulk_threads(void) { return g_bulk_threads.load(); }

int ct_malloc_arenas(void) { return g_arenas; }

int ct_release_host_memory(void) {
#ifdef CT_LARGE_BUFFER_CACHE
  LargeBufferCache::self().dropKept();
#endif
  return malloc_trim(0);
}

int ct_set_buffer_cache(int on) {
#ifdef CT_LARGE_BUFFER_CACHE
  // Buffers keep the deleter they were made with, so either allocator frees the other's.
  c10::SetCPUAllocator(on ? static_cast<c10::Allocator *>(&LargeBufferCache::self()) : c10::GetDefaultCPUAllocator(), 1);
  if (!on) LargeBufferCache::self().dropKept();
  return 1;
#else
  return on ? 0 : 1;
#endif
}

int ct_buffer_cache_stats(int64_t *live, int64_t *cached, int64_t *peak_live, int64_t *hits, int64_t *misses) {
#ifdef CT_LARGE_BUFFER_CACHE
  if (c10::GetCPUAllocator() != &LargeBufferCache::self()) return 0;
  auto s = LargeBufferCache::self().stats();
  *live = s.live;
  *cached = s.cached;
  *peak_live = s.peak_live;
  *hits = s.hits;
  *misses = s.misses;
  return 1;
#else
  return 0;
#endif
}

}  // extern "C"
