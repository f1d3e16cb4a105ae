// The direct convolution (caffe/util/direct_conv.hpp, caffe_patches/0207) against
// upstream's loops (the reference: im2col and one GEMM per image, fast paths off): the
// shapes of S-Net and of the TCDCN net, and odd ones (output channels not a multiple of
// 8, rows not a multiple of the 6-pixel tile, stride, dilation, padding, windows cut off,
// no bias, several images on 1 and 2 threads). Also: the layer takes the direct path in
// either phase unless it is switched off, and new weights are repacked. (The backward
// pass after a direct forward: test_fast_cpu_paths.cpp's convolution cases.)
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/util/direct_conv.hpp"
#include "caffe/util/fast_cpu.hpp"

#include "caffe/test/conv_test_param.hpp"
#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename Dtype>   // float only: the kernel is for float
class DirectConvTest : public CPUDeviceTest<Dtype> {
 protected:
  virtual void SetUp() {
#ifdef _OPENMP
    saved_threads_ = omp_get_max_threads();
#endif
  }
  virtual void TearDown() {
    set_fast_cpu_enabled(true);
    set_direct_conv_enabled(true);
#ifdef _OPENMP
    omp_set_num_threads(saved_threads_);
#endif
  }

  static LayerParameter Param(int out, int k, int s, int p, int d, bool bias, Phase phase) {
    LayerParameter param = ConvTestParam(out, k, s, p, d, bias);
    param.set_phase(phase);
    return param;
  }

  // A fresh layer (weights from a fixed seed) on fixed inputs: its top.
  vector<float> Forward(const LayerParameter& param, const vector<int>& shape, bool fast,
                        bool direct, int threads,
                        shared_ptr<Layer<float> >* keep = NULL) {
    set_fast_cpu_enabled(fast);
    set_direct_conv_enabled(direct);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Caffe::set_random_seed(1701);
    bottom_.Reshape(shape);
    FillerParameter filler_param;
    filler_param.set_std(1.0);
    GaussianFiller<float> filler(filler_param);
    filler.Fill(&bottom_);
    vector<Blob<float>*> bottoms(1, &bottom_), tops(1, &top_);
    shared_ptr<Layer<float> > layer = LayerRegistry<float>::CreateLayer(param);
    layer->SetUp(bottoms, tops);
    layer->Forward(bottoms, tops);
    if (keep) *keep = layer;
    return vector<float>(top_.cpu_data(), top_.cpu_data() + top_.count());
  }

  static void ExpectClose(const vector<float>& ref, const vector<float>& got,
                          const char* what) {
    ASSERT_EQ(ref.size(), got.size());
    float worst = 0;
    int at = 0;
    for (int i = 0; i < ref.size(); ++i) {
      const float err = std::fabs(ref[i] - got[i]) / std::max(1.f, std::fabs(ref[i]));
      if (!(err <= worst)) { worst = err; at = i; }
    }
    EXPECT_LE(worst, 2e-5) << what << ": differs at " << at << ": " << ref[at] << " vs "
                           << got[at];
  }

  // The direct path on 1 and 2 threads against upstream's loops.
  void ExpectSame(int out, int k, int s, int p, int d, bool bias, int n, int c, int h,
                  int w) {
    vector<int> shape(4);
    shape[0] = n; shape[1] = c; shape[2] = h; shape[3] = w;
    const LayerParameter param = Param(out, k, s, p, d, bias, TEST);
    const vector<float> ref = Forward(param, shape, false, false, 1);
    for (int threads = 1; threads <= 2; ++threads) {
      ExpectClose(ref, Forward(param, shape, true, true, threads), "direct");
    }
  }

  Blob<float> bottom_, top_;
  int saved_threads_;
};

typedef ::testing::Types<float> FloatOnly;
TYPED_TEST_CASE(DirectConvTest, FloatOnly);

TYPED_TEST(DirectConvTest, SnetShapes) {
  if (!DirectConv::Supported(3, 3)) return;   // no AVX2 / FMA: the GEMM path runs
  this->ExpectSame(8, 3, 2, 1, 1, true, 1, 1, 120, 120);
  this->ExpectSame(16, 3, 2, 1, 1, true, 1, 8, 60, 60);
  this->ExpectSame(32, 3, 2, 1, 1, true, 1, 16, 30, 30);
  this->ExpectSame(32, 3, 1, 1, 1, true, 1, 32, 15, 15);
  this->ExpectSame(32, 3, 1, 2, 2, true, 1, 32, 15, 15);   // dilated
  this->ExpectSame(32, 3, 1, 4, 4, true, 2, 32, 8, 8);     // dilation past the grid
  this->ExpectSame(13, 1, 1, 0, 1, true, 1, 32, 15, 15);   // the 1x1 head
}

TYPED_TEST(DirectConvTest, TcdcnShapes) {
  if (!DirectConv::Supported(5, 5)) return;
  this->ExpectSame(20, 5, 1, 0, 1, true, 2, 1, 40, 40);   // 20 channels: a half block
  this->ExpectSame(48, 3, 1, 0, 1, true, 2, 20, 18, 18);
  this->ExpectSame(64, 3, 1, 0, 1, true, 6, 48, 8, 8);
}

TYPED_TEST(DirectConvTest, OddShapes) {
  if (!DirectConv::Supported(4, 4)) return;
  this->ExpectSame(5, 3, 1, 2, 2, false, 3, 3, 9, 9);     // no bias, padding 2
  this->ExpectSame(3, 4, 3, 0, 1, true, 2, 2, 11, 13);    // windows cut off
  this->ExpectSame(9, 2, 1, 0, 1, true, 5, 3, 5, 7);      // rows of 4 and 6 pixels
  this->ExpectSame(17, 3, 2, 1, 1, true, 1, 4, 7, 31);    // 16 + 1 channels, long rows
}

TYPED_TEST(DirectConvTest, TheLayerTakesTheDirectPathInEitherPhase) {
  if (!DirectConv::Supported(3, 3)) return;
  vector<int> shape(4);
  shape[0] = 1; shape[1] = 32; shape[2] = 15; shape[3] = 15;
  const ConvGeometry g = {32, 15, 15, 3, 3, 2, 2, 1, 1, 2, 2, 15, 15};
  vector<float> gemm;
  const Phase phases[] = {TEST, TRAIN};
  for (int k = 0; k < 2; ++k) {
    // the layer's top is the kernel's, to the bit
    shared_ptr<Layer<float> > layer;
    const LayerParameter param = this->Param(32, 3, 1, 2, 2, true, phases[k]);
    const vector<float> top = this->Forward(param, shape, true, true, 1, &layer);
    DirectConv direct;
    direct.SetWeights(layer->blobs()[0]->cpu_data(), layer->blobs()[1]->cpu_data(), 32, 32,
                      3, 3);
    vector<float> scratch(DirectConv::ScratchSize(g)), out(top.size());
    direct.Forward(this->bottom_.cpu_data(), g, scratch.data(), out.data());
    for (int i = 0; i < top.size(); ++i) ASSERT_EQ(top[i], out[i]) << i;
    // switched off: the batched GEMM path, which rounds differently
    gemm = this->Forward(param, shape, true, false, 1);
    bool differs = false;
    for (int i = 0; i < gemm.size(); ++i) differs = differs || gemm[i] != top[i];
    EXPECT_TRUE(differs) << phases[k];
  }
}

TYPED_TEST(DirectConvTest, NewWeightsAreRepacked) {
  if (!DirectConv::Supported(3, 3)) return;
  vector<int> shape(4);
  shape[0] = 2; shape[1] = 8; shape[2] = 12; shape[3] = 12;
  const LayerParameter param = this->Param(16, 3, 1, 1, 1, true, TEST);
  shared_ptr<Layer<float> > layer;
  this->Forward(param, shape, true, true, 1, &layer);
  float* w = layer->blobs()[0]->mutable_cpu_data();
  for (int i = 0; i < layer->blobs()[0]->count(); i += 7) w[i] = -2 * w[i] + 0.25f;
  layer->blobs()[1]->mutable_cpu_data()[3] += 1.5f;
  vector<Blob<float>*> bottoms(1, &this->bottom_), tops(1, &this->top_);
  layer->Forward(bottoms, tops);   // the direct path, the changed weights
  const vector<float> direct(this->top_.cpu_data(), this->top_.cpu_data() + this->top_.count());
  set_fast_cpu_enabled(false);     // the same layer, upstream's loops
  layer->Forward(bottoms, tops);
  this->ExpectClose(vector<float>(this->top_.cpu_data(),
                                  this->top_.cpu_data() + this->top_.count()),
                    direct, "after new weights");
}

}  // namespace caffe
