// The direct convolution of caffe/util/direct_conv.hpp. The kernel is compiled for AVX2
// and FMA through function attributes (the rest of Caffe keeps the build's flags) and
// runs only where the CPU reports both; on other architectures Supported() is false and
// the layer keeps its GEMM path.
#include <algorithm>
#include <cstring>

#include "caffe/layers/conv_layer.hpp"
#include "caffe/util/direct_conv.hpp"

#if defined(__x86_64__) || defined(__i386__)
#define TCDCN_DIRECT_CONV_X86 1
#include <immintrin.h>
#endif

namespace caffe {

namespace {
const int kLanes = 8;   // floats per AVX register: output channels per block
}  // namespace

#ifdef TCDCN_DIRECT_CONV_X86
namespace {

const int kTile = 6;    // output pixels per tile (2 x 6 accumulators, 2 weights, 1 input)

// What a tile needs to know: the padded input, the packed weights, the output.
struct TileArgs {
  const float* input;   // padded input: channels x padded_h x padded_w
  int channels, plane;  // plane = padded_h * padded_w
  const float* packed;  // [block][channel][tap][8]
  const float* bias;    // per output channel, rounded up to 8
  const int* offsets;   // each tap's offset in the padded plane
  int taps;
  int stride_w;
  float* out;           // num_output x out_h x out_w
  int num_output, out_plane;
};

// A tile: PX output pixels of one row (starting at padded input offset `start`, output
// offset `pixel`) for OB blocks of 8 output channels from block `block`. The
// accumulators are named variables, not an array: GCC kept an array's elements in
// memory, storing each after every FMA.
template <int PX, int OB>
__attribute__((target("avx2,fma")))
void Tile(const TileArgs& a, int block, size_t start, int pixel) {
  const size_t block_size = static_cast<size_t>(a.channels) * a.taps * kLanes;
  const __m256 bias0 = _mm256_loadu_ps(a.bias + block * kLanes);
  const __m256 bias1 = OB > 1 ? _mm256_loadu_ps(a.bias + (block + 1) * kLanes) : bias0;
  __m256 s00 = bias0, s01 = bias0, s02 = bias0, s03 = bias0, s04 = bias0, s05 = bias0;
  __m256 s10 = bias1, s11 = bias1, s12 = bias1, s13 = bias1, s14 = bias1, s15 = bias1;
  const size_t sw = a.stride_w;
  const float* w = a.packed + block * block_size;
  for (int c = 0; c < a.channels; ++c) {
    const float* plane = a.input + static_cast<size_t>(c) * a.plane + start;
    for (int k = 0; k < a.taps; ++k, w += kLanes) {
      const float* x = plane + a.offsets[k];
      const __m256 w0 = _mm256_loadu_ps(w);
      const __m256 w1 = OB > 1 ? _mm256_loadu_ps(w + block_size) : w0;
#define TCDCN_DIRECT_STEP(p)                                         \
      if (PX > p) {                                                  \
        const __m256 v = _mm256_broadcast_ss(x + p * sw);            \
        s0##p = _mm256_fmadd_ps(w0, v, s0##p);                       \
        if (OB > 1) s1##p = _mm256_fmadd_ps(w1, v, s1##p);           \
      }
      TCDCN_DIRECT_STEP(0) TCDCN_DIRECT_STEP(1) TCDCN_DIRECT_STEP(2)
      TCDCN_DIRECT_STEP(3) TCDCN_DIRECT_STEP(4) TCDCN_DIRECT_STEP(5)
#undef TCDCN_DIRECT_STEP
    }
  }
  // lanes (output channels) to planes
  alignas(32) float sums[2][kTile][kLanes];
  const __m256 all[2][kTile] = {{s00, s01, s02, s03, s04, s05},
                                {s10, s11, s12, s13, s14, s15}};
  for (int b = 0; b < OB; ++b) {
    for (int p = 0; p < PX; ++p) _mm256_store_ps(sums[b][p], all[b][p]);
  }
  for (int b = 0; b < OB; ++b) {
    const int first = (block + b) * kLanes;
    const int lanes = std::min(kLanes, a.num_output - first);
    for (int j = 0; j < lanes; ++j) {
      float* o = a.out + static_cast<size_t>(first + j) * a.out_plane + pixel;
      for (int p = 0; p < PX; ++p) o[p] = sums[b][p][j];
    }
  }
}

template <int OB>
void Blocks(const TileArgs& a, int block, const ConvGeometry& g, int padded_w) {
  for (int oy = 0; oy < g.out_h; ++oy) {
    const size_t row = static_cast<size_t>(oy) * g.stride_h * padded_w;
    int ox = 0;
    for (; ox + kTile <= g.out_w; ox += kTile) {
      Tile<kTile, OB>(a, block, row + ox * g.stride_w, oy * g.out_w + ox);
    }
    const size_t start = row + ox * g.stride_w;
    const int pixel = oy * g.out_w + ox;
    switch (g.out_w - ox) {
      case 5: Tile<5, OB>(a, block, start, pixel); break;
      case 4: Tile<4, OB>(a, block, start, pixel); break;
      case 3: Tile<3, OB>(a, block, start, pixel); break;
      case 2: Tile<2, OB>(a, block, start, pixel); break;
      case 1: Tile<1, OB>(a, block, start, pixel); break;
      default: break;
    }
  }
}

}  // namespace
#endif  // TCDCN_DIRECT_CONV_X86

bool DirectConv::Supported(int kernel_h, int kernel_w) {
#ifdef TCDCN_DIRECT_CONV_X86
  static const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return cpu && kernel_h * kernel_w <= kMaxTaps;
#else
  return false;
#endif
}

void DirectConv::SetWeights(const float* weight, const float* bias, int num_output,
                            int channels, int kernel_h, int kernel_w) {
  const size_t count = static_cast<size_t>(num_output) * channels * kernel_h * kernel_w;
  const int blocks = (num_output + kLanes - 1) / kLanes;
  bias_.assign(blocks * kLanes, 0.f);
  if (bias != NULL) std::copy(bias, bias + num_output, bias_.begin());
  if (num_output == num_output_ && channels == channels_ && kernel_h == kernel_h_ &&
      kernel_w == kernel_w_ && weight_.size() == count &&
      std::memcmp(weight_.data(), weight, count * sizeof(float)) == 0) {
    return;   // the same weights as last time: the packing stands
  }
  num_output_ = num_output;
  channels_ = channels;
  kernel_h_ = kernel_h;
  kernel_w_ = kernel_w;
  weight_.assign(weight, weight + count);
  const int taps = kernel_h * kernel_w;
  packed_.assign(static_cast<size_t>(blocks) * channels * taps * kLanes, 0.f);
  for (int o = 0; o < num_output; ++o) {
    for (int c = 0; c < channels; ++c) {
      for (int k = 0; k < taps; ++k) {
        packed_[((static_cast<size_t>(o / kLanes) * channels + c) * taps + k) * kLanes +
                o % kLanes] = weight[(static_cast<size_t>(o) * channels + c) * taps + k];
      }
    }
  }
}

size_t DirectConv::ScratchSize(const ConvGeometry& g) {
  return static_cast<size_t>(g.channels) * (g.height + 2 * g.pad_h) * (g.width + 2 * g.pad_w);
}

void DirectConv::Forward(const float* in, const ConvGeometry& g, float* scratch,
                         float* out) const {
#ifdef TCDCN_DIRECT_CONV_X86   // elsewhere Supported() is false: never called
  const int padded_h = g.height + 2 * g.pad_h, padded_w = g.width + 2 * g.pad_w;
  const int plane = padded_h * padded_w;
  // the input on its zero border
  for (int c = 0; c < g.channels; ++c) {
    float* dst = scratch + static_cast<size_t>(c) * plane;
    std::fill(dst, dst + g.pad_h * padded_w, 0.f);
    for (int y = 0; y < g.height; ++y) {
      float* row = dst + (y + g.pad_h) * padded_w;
      std::fill(row, row + g.pad_w, 0.f);
      std::memcpy(row + g.pad_w, in + (static_cast<size_t>(c) * g.height + y) * g.width,
                  g.width * sizeof(float));
      std::fill(row + g.pad_w + g.width, row + padded_w, 0.f);
    }
    std::fill(dst + (g.height + g.pad_h) * padded_w, dst + plane, 0.f);
  }
  int offsets[kMaxTaps];
  for (int i = 0; i < g.kernel_h; ++i) {
    for (int j = 0; j < g.kernel_w; ++j) {
      offsets[i * g.kernel_w + j] = i * g.dilation_h * padded_w + j * g.dilation_w;
    }
  }
  const TileArgs a = {scratch, g.channels, plane, packed_.data(), bias_.data(), offsets,
                      g.kernel_h * g.kernel_w, g.stride_w, out, num_output_,
                      g.out_h * g.out_w};
  const int blocks = (num_output_ + kLanes - 1) / kLanes;
  int block = 0;
  for (; block + 2 <= blocks; block += 2) Blocks<2>(a, block, g, padded_w);
  if (block < blocks) Blocks<1>(a, block, g, padded_w);
#endif
}

}  // namespace caffe
