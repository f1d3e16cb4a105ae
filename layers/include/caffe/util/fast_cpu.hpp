#ifndef CAFFE_UTIL_FAST_CPU_HPP_
#define CAFFE_UTIL_FAST_CPU_HPP_

/**
 * @file fast_cpu.hpp
 * @brief The switch and the knobs of tcdcn-caffe's fast CPU paths.
 *
 * The patched CPU code of Pooling, ReLU, MVN and Convolution (caffe_patches/02xx-perf-*)
 * keeps upstream's loops next to the fast ones. The fast paths are on by default;
 * CAFFE_FAST_CPU=0 in the environment (read once) selects upstream's loops, and
 * set_fast_cpu_enabled() switches at run time (the gtests compare both paths).
 * Threads: OpenMP, so OMP_NUM_THREADS is the one knob (the OpenMP build of OpenBLAS
 * shares the same pool). Small blobs stay on the calling thread: below kParallelMinWork
 * elements a fork costs more than it saves (inference at batch 1).
 */

#include <stdint.h>

#include <cstdlib>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace caffe {

/// Whether the environment variable `name` is set to 0 (a switch that is on by default).
inline bool env_says_off(const char* name) {
  const char* v = std::getenv(name);
  return v != NULL && std::strcmp(v, "0") == 0;
}

inline bool& fast_cpu_flag() {
  static bool flag = !env_says_off("CAFFE_FAST_CPU");
  return flag;
}

/// True unless CAFFE_FAST_CPU=0 or set_fast_cpu_enabled(false).
inline bool fast_cpu_enabled() { return fast_cpu_flag(); }
inline void set_fast_cpu_enabled(bool on) { fast_cpu_flag() = on; }

/// Loops over fewer elements than this run on the calling thread.
const int kParallelMinWork = 1 << 15;

/// Elementwise loops are split into blocks of this many elements, each an `omp simd`
/// loop, and threads take whole blocks (a combined `parallel for simd` is vectorised by
/// GCC only on its threaded path, not where the if() clause keeps it serial).
const int kSimdBlock = 4096;

/// The batched convolution im2col's buffer holds at most this many elements (default
/// 1 M: 4 MB in float, measured best of 4 M, 1 M and 256 K by tools/bench_train.py); a
/// layer whose single image needs more keeps upstream's
/// per-image path. CAFFE_CONV_CHUNK_ELEMENTS overrides it (read once).
inline long& conv_chunk_cap_flag() {
  static long cap = [] {
    const char* v = std::getenv("CAFFE_CONV_CHUNK_ELEMENTS");
    long n = v != NULL ? std::atol(v) : 0;
    return n > 0 ? n : (1L << 20);
  }();
  return cap;
}
inline long conv_chunk_cap() { return conv_chunk_cap_flag(); }
inline void set_conv_chunk_cap(long elements) { conv_chunk_cap_flag() = elements; }

/// Forward passes of InnerProduct and LocallyConnected on at most this many images take
/// one matrix-vector product (GEMV) per image instead of one matrix product (GEMM) for
/// the batch. Inference runs such batches (a face and its mirror: 2), and oneMKL's GEMM
/// is slow there on the AMD EPYC machines of this project (single thread, scratch
/// benchmark of cblas_sgemm against cblas_sgemv calls: conv4's 80 x 256 by 256 x N,
/// N = 2: 51 against 9 us; N = 8: 65 against 40; N = 12: 51 against 59; fc5's GEMM, 2 x
/// 320 by 320 x 256: 15 us, one row: 4 us), while OpenBLAS's GEMM is as fast as its GEMVs
/// or faster (N = 2: 5 against 9 us). Default: 8 in builds linked with oneMKL (TCDCN_BLAS_MKL,
/// CMakeLists.txt), 0 (GEMM always) with OpenBLAS; CAFFE_GEMV_MAX_BATCH overrides it
/// (read once), set_gemv_max_batch() at run time (the gtests).
inline int& gemv_max_batch_flag() {
  static int n = [] {
    const char* v = std::getenv("CAFFE_GEMV_MAX_BATCH");
    if (v != NULL && *v != '\0') return std::atoi(v);
#ifdef TCDCN_BLAS_MKL
    return 8;
#else
    return 0;
#endif
  }();
  return n;
}
inline int gemv_max_batch() { return gemv_max_batch_flag(); }
inline void set_gemv_max_batch(int n) { gemv_max_batch_flag() = n; }

/// The direct convolution (caffe/util/direct_conv.hpp) for convolutions' forward passes:
/// on by default; CAFFE_DIRECT_CONV=0 (read once) leaves them to the batched GEMM path,
/// set_direct_conv_enabled() switches at run time (the gtests).
inline bool& direct_conv_flag() {
  static bool flag = !env_says_off("CAFFE_DIRECT_CONV");
  return flag;
}
inline bool direct_conv_enabled() { return direct_conv_flag(); }
inline void set_direct_conv_enabled(bool on) { direct_conv_flag() = on; }

/// Threads the fast paths may use (OMP_NUM_THREADS; 1 without OpenMP).
inline int fast_cpu_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Bit patterns of float/double as same-size integers, for branch-free selects (GCC
/// compiles a select between floats on a float compare to a branch on SSE2).
template <typename Dtype> struct FloatBits;
template <> struct FloatBits<float> {
  typedef int32_t Int;
  static inline Int to_bits(float f) { Int i; std::memcpy(&i, &f, sizeof(i)); return i; }
  static inline float from_bits(Int i) { float f; std::memcpy(&f, &i, sizeof(f)); return f; }
};
template <> struct FloatBits<double> {
  typedef int64_t Int;
  static inline Int to_bits(double f) { Int i; std::memcpy(&i, &f, sizeof(i)); return i; }
  static inline double from_bits(Int i) { double f; std::memcpy(&f, &i, sizeof(f)); return f; }
};

}  // namespace caffe

#endif  // CAFFE_UTIL_FAST_CPU_HPP_
