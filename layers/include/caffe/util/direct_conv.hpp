#ifndef CAFFE_UTIL_DIRECT_CONV_HPP_
#define CAFFE_UTIL_DIRECT_CONV_HPP_

/**
 * @file direct_conv.hpp
 * @brief A direct 2-D convolution for the CPU forward pass.
 *
 * The nets this project runs are small (S-Net's 32-channel layers on a 15x15 grid,
 * TCDCN's conv1-3 on a 40x40 face): im2col then one GEMM spends much of its time copying
 * and in GEMM set-up, and strided or dilated layers fare worst. This kernel
 * computes each output directly: eight output channels per AVX register, a tile of up to
 * six output pixels by two such registers held in twelve accumulators, the weights
 * repacked once (channel blocks of eight, then input channel, then tap), the input copied
 * onto a zero border. Sums run over input channels, then taps, in that order: the results
 * differ from the GEMM path's by rounding only (caffe/test/test_direct_conv.cpp).
 *
 * Used by ConvolutionLayer's forward pass, in both phases (caffe_patches/0207-perf-conv-
 * direct-cpu), on CPUs with AVX2 and FMA; the backward pass keeps the batched GEMM path.
 */

#include <cstddef>
#include <vector>

namespace caffe {

struct ConvGeometry;   // caffe/layers/conv_layer.hpp

class DirectConv {
 public:
  DirectConv() : num_output_(0), channels_(0), kernel_h_(0), kernel_w_(0) {}

  /// Whether this CPU runs the kernel (AVX2 and FMA) and a kernel of this size fits it
  /// (at most kMaxTaps taps).
  static bool Supported(int kernel_h, int kernel_w);
  static const int kMaxTaps = 64;

  /// The layer's weights (num_output x channels x kernel_h x kernel_w) and bias (NULL:
  /// none), repacked only where they differ from the last call's.
  void SetWeights(const float* weight, const float* bias, int num_output, int channels,
                  int kernel_h, int kernel_w);

  /// Floats of scratch one Forward() call needs (the input on its zero border).
  static size_t ScratchSize(const ConvGeometry& g);

  /// One image: in (channels x height x width) -> out (num_output x out_h x out_w).
  void Forward(const float* in, const ConvGeometry& g, float* scratch, float* out) const;

 private:
  std::vector<float> weight_;   // the weights last packed, as given
  std::vector<float> packed_;   // [channel block of 8][input channel][tap][8]
  std::vector<float> bias_;     // num_output rounded up to 8, zeros past num_output
  int num_output_, channels_, kernel_h_, kernel_w_;
};

}  // namespace caffe

#endif  // CAFFE_UTIL_DIRECT_CONV_HPP_
