// The fast CPU paths of caffe_patches/02xx-perf-* against upstream's loops: the same
// layer, inputs and top diffs run with set_fast_cpu_enabled(false) (the reference) and
// (true), on 1 and 2 OpenMP threads, for the shapes of the TCDCN net and odd ones
// (partial pooling windows, padding, stride, dilation, convolution chunks that do not
// divide the batch, in-place ReLU). Upstream's own typed tests of these layers (gradient
// checks included) run with the fast paths on, the default.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/layers/inner_product_layer.hpp"
#include "caffe/layers/mvn_layer.hpp"
#include "caffe/layers/pooling_layer.hpp"
#include "caffe/layers/relu_layer.hpp"
#include "caffe/util/fast_cpu.hpp"

#include "caffe/test/conv_test_param.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename Dtype>
struct PathResult {
  vector<vector<Dtype> > values;  // tops, bottom diffs, param diffs
  vector<const char*> names;
};

template <typename Dtype>
class FastCpuPathsTest : public CPUDeviceTest<Dtype> {
 protected:
  virtual void TearDown() {
    set_fast_cpu_enabled(true);
    set_conv_chunk_cap(1L << 20);
    set_gemv_max_batch(saved_gemv_max_batch_);
#ifdef _OPENMP
    omp_set_num_threads(saved_threads_);
#endif
  }
  virtual void SetUp() {
    saved_gemv_max_batch_ = gemv_max_batch();
#ifdef _OPENMP
    saved_threads_ = omp_get_max_threads();
#endif
  }

  // Forward and backward of a fresh layer (weights from a fixed seed) on fixed inputs.
  PathResult<Dtype> Run(const LayerParameter& param, const vector<int>& shape, bool fast,
      int threads, bool in_place = false, bool propagate = true, int extra_tops = 0) {
    set_fast_cpu_enabled(fast);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Caffe::set_random_seed(1701);
    Blob<Dtype> bottom(shape);
    FillerParameter filler_param;
    filler_param.set_std(1.0);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(&bottom);
    Blob<Dtype> top, mask;
    vector<Blob<Dtype>*> bottoms(1, &bottom);
    vector<Blob<Dtype>*> tops(1, in_place ? &bottom : &top);
    if (extra_tops) tops.push_back(&mask);
    shared_ptr<Layer<Dtype> > layer = LayerRegistry<Dtype>::CreateLayer(param);
    layer->SetUp(bottoms, tops);
    PathResult<Dtype> r;
    layer->Forward(bottoms, tops);
    const Dtype* t = tops[0]->cpu_data();
    r.values.push_back(vector<Dtype>(t, t + tops[0]->count()));
    r.names.push_back("top");
    Blob<Dtype> diff(tops[0]->shape());
    filler.Fill(&diff);
    caffe_copy(diff.count(), diff.cpu_data(), tops[0]->mutable_cpu_diff());
    for (int i = 0; i < layer->blobs().size(); ++i) {
      caffe_set(layer->blobs()[i]->count(), Dtype(0),
          layer->blobs()[i]->mutable_cpu_diff());
    }
    layer->Backward(tops, vector<bool>(1, propagate), bottoms);
    if (propagate) {
      const Dtype* d = bottom.cpu_diff();
      r.values.push_back(vector<Dtype>(d, d + bottom.count()));
      r.names.push_back("bottom diff");
    }
    for (int i = 0; i < layer->blobs().size(); ++i) {
      const Dtype* d = layer->blobs()[i]->cpu_diff();
      r.values.push_back(vector<Dtype>(d, d + layer->blobs()[i]->count()));
      r.names.push_back(i == 0 ? "weight diff" : "bias diff");
    }
    return r;
  }

  void ExpectSame(const LayerParameter& param, const vector<int>& shape,
      bool in_place = false, bool propagate = true, int extra_tops = 0) {
    const PathResult<Dtype> ref = Run(param, shape, false, 1, in_place, propagate, extra_tops);
    const Dtype tol = sizeof(Dtype) == 4 ? 2e-4 : 1e-10;
    for (int threads = 1; threads <= 2; ++threads) {
      const PathResult<Dtype> got = Run(param, shape, true, threads, in_place, propagate,
                                        extra_tops);
      ASSERT_EQ(ref.values.size(), got.values.size());
      for (int k = 0; k < ref.values.size(); ++k) {
        ASSERT_EQ(ref.values[k].size(), got.values[k].size());
        Dtype worst = 0;
        int at = -1;
        for (int i = 0; i < ref.values[k].size(); ++i) {
          const Dtype a = ref.values[k][i], b = got.values[k][i];
          const Dtype err = std::fabs(a - b) / std::max(Dtype(1), std::fabs(a));
          if (!(err <= worst)) { worst = err; at = i; }
        }
        EXPECT_LE(worst, tol) << param.type() << " " << ref.names[k] << " differs at "
            << at << " (" << threads << " threads): "
            << ref.values[k][std::max(at, 0)] << " vs " << got.values[k][std::max(at, 0)];
      }
    }
  }

  int saved_threads_;
  int saved_gemv_max_batch_;
};

TYPED_TEST_CASE(FastCpuPathsTest, TestDtypes);

static vector<int> Shape(int n, int c, int h, int w) {
  vector<int> s(4);
  s[0] = n; s[1] = c; s[2] = h; s[3] = w;
  return s;
}

static LayerParameter PoolParam(PoolingParameter_PoolMethod method, int k, int s, int p) {
  LayerParameter param;
  param.set_type("Pooling");
  PoolingParameter* pp = param.mutable_pooling_param();
  pp->set_pool(method);
  pp->set_kernel_size(k);
  pp->set_stride(s);
  pp->set_pad(p);
  return param;
}

TYPED_TEST(FastCpuPathsTest, MaxPoolingTcdcnShapes) {
  LayerParameter param = PoolParam(PoolingParameter_PoolMethod_MAX, 2, 2, 0);
  this->ExpectSame(param, Shape(8, 20, 36, 36));
  this->ExpectSame(param, Shape(8, 48, 16, 16));
  this->ExpectSame(param, Shape(3, 64, 6, 6));
}

TYPED_TEST(FastCpuPathsTest, MaxPoolingOddSizesPadStride) {
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_MAX, 2, 2, 0), Shape(2, 3, 7, 5));
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_MAX, 3, 2, 1), Shape(2, 3, 7, 7));
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_MAX, 3, 1, 0), Shape(2, 2, 6, 9));
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_MAX, 2, 2, 0), Shape(2, 3, 7, 5),
                   false, true, 1);  // the mask as a second top
}

TYPED_TEST(FastCpuPathsTest, AveragePooling) {
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_AVE, 2, 2, 0), Shape(8, 20, 36, 36));
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_AVE, 3, 2, 1), Shape(2, 3, 7, 7));
  this->ExpectSame(PoolParam(PoolingParameter_PoolMethod_AVE, 3, 3, 0), Shape(2, 3, 8, 10));
}

TYPED_TEST(FastCpuPathsTest, ReLU) {
  LayerParameter param;
  param.set_type("ReLU");
  this->ExpectSame(param, Shape(8, 20, 36, 36));
  this->ExpectSame(param, Shape(8, 20, 36, 36), true);   // in place, as in the net
  this->ExpectSame(param, Shape(2, 3, 5, 7), true);      // below the threading threshold
  param.mutable_relu_param()->set_negative_slope(0.1);
  this->ExpectSame(param, Shape(8, 20, 36, 36), true);
}

TYPED_TEST(FastCpuPathsTest, MVN) {
  for (int across = 0; across <= 1; ++across) {
    for (int variance = 0; variance <= 1; ++variance) {
      LayerParameter param;
      param.set_type("MVN");
      param.mutable_mvn_param()->set_across_channels(across);
      param.mutable_mvn_param()->set_normalize_variance(variance);
      this->ExpectSame(param, Shape(32, 1, 40, 40));
      this->ExpectSame(param, Shape(3, 2, 5, 7));
    }
  }
}

TYPED_TEST(FastCpuPathsTest, ConvolutionTcdcnShapes) {
  this->ExpectSame(ConvTestParam(20, 5, 1, 0, 1, true), Shape(6, 1, 40, 40));
  this->ExpectSame(ConvTestParam(48, 3, 1, 0, 1, true), Shape(6, 20, 18, 18));
  this->ExpectSame(ConvTestParam(64, 3, 1, 0, 1, true), Shape(6, 48, 8, 8));
}

TYPED_TEST(FastCpuPathsTest, ConvolutionChunksPadStrideDilation) {
  // 7 images in chunks of 3: the last chunk holds one image.
  set_conv_chunk_cap(3L * 2 * 9 * 5 * 4);
  this->ExpectSame(ConvTestParam(4, 3, 2, 1, 1, true), Shape(7, 2, 10, 8));
  set_conv_chunk_cap(3L * 3 * 9 * 25);
  this->ExpectSame(ConvTestParam(5, 3, 1, 2, 2, false), Shape(7, 3, 9, 9));
  this->ExpectSame(ConvTestParam(5, 3, 1, 2, 2, true), Shape(7, 3, 9, 9), false, false);
  set_conv_chunk_cap(4L << 20);
  this->ExpectSame(ConvTestParam(3, 1, 1, 0, 1, true), Shape(5, 4, 6, 7));   // 1x1
  this->ExpectSame(ConvTestParam(3, 4, 3, 0, 1, true), Shape(5, 2, 11, 13)); // windows cut off
}

TYPED_TEST(FastCpuPathsTest, ConvolutionFallsBackAboveTheCap) {
  // One image needs more than the cap: upstream's per-image path runs (same results).
  set_conv_chunk_cap(10);
  this->ExpectSame(ConvTestParam(4, 3, 1, 1, 1, true), Shape(3, 2, 6, 6));
}

static LayerParameter InnerProductParam(int out, bool bias, bool transpose) {
  LayerParameter param;
  param.set_type("InnerProduct");
  InnerProductParameter* ip = param.mutable_inner_product_param();
  ip->set_num_output(out);
  ip->set_bias_term(bias);
  ip->set_transpose(transpose);
  ip->mutable_weight_filler()->set_type("gaussian");
  ip->mutable_weight_filler()->set_std(0.5);
  ip->mutable_bias_filler()->set_type("gaussian");
  ip->mutable_bias_filler()->set_std(0.5);
  return param;
}

TYPED_TEST(FastCpuPathsTest, InnerProductSmallBatchesTakeGemvs) {
  // Batches up to the limit take one GEMV per row, larger ones upstream's GEMM: both
  // sides of the limit, with and without bias and transpose, against upstream.
  set_gemv_max_batch(4);
  const int batches[] = {1, 2, 4, 5};
  for (int b = 0; b < 4; ++b) {
    for (int bias = 0; bias <= 1; ++bias) {
      for (int transpose = 0; transpose <= 1; ++transpose) {
        this->ExpectSame(InnerProductParam(7, bias, transpose), Shape(batches[b], 3, 2, 5));
      }
    }
    this->ExpectSame(InnerProductParam(256, true, false), Shape(batches[b], 80, 2, 2));
  }
}

}  // namespace caffe
