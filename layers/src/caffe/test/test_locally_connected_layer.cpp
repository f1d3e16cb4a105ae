#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/layers/locally_connected_layer.hpp"
#include "caffe/util/fast_cpu.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Plain-loop reference: out[n,m,ho,wo] = bias[m,ho,wo] +
//   sum_{c,i,j} w[(l*M + m), c, i, j] * in[n, c, ho*sh - ph + i, wo*sw - pw + j].
template <typename Dtype>
void lc_reference(const Blob<Dtype>* in, const Blob<Dtype>* weight,
    const Blob<Dtype>* bias, int num_output, int kh, int kw, int sh, int sw,
    int ph, int pw, Blob<Dtype>* out) {
  const int N = in->num(), C = in->channels(), H = in->height(), W = in->width();
  const int Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  out->Reshape(N, num_output, Ho, Wo);
  const Dtype* w = weight->cpu_data();
  for (int n = 0; n < N; ++n) {
    for (int m = 0; m < num_output; ++m) {
      for (int ho = 0; ho < Ho; ++ho) {
        for (int wo = 0; wo < Wo; ++wo) {
          const int l = ho * Wo + wo;
          Dtype sum = bias ? bias->cpu_data()[(m * Ho + ho) * Wo + wo] : Dtype(0);
          for (int c = 0; c < C; ++c) {
            for (int i = 0; i < kh; ++i) {
              for (int j = 0; j < kw; ++j) {
                const int h = ho * sh - ph + i, x = wo * sw - pw + j;
                if (h < 0 || h >= H || x < 0 || x >= W) continue;
                sum += w[(((l * num_output + m) * C + c) * kh + i) * kw + j] *
                       in->data_at(n, c, h, x);
              }
            }
          }
          out->mutable_cpu_data()[out->offset(n, m, ho, wo)] = sum;
        }
      }
    }
  }
}

template <typename TypeParam>
class LocallyConnectedLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  LocallyConnectedLayerTest()
      : blob_bottom_(new Blob<Dtype>(2, 3, 6, 5)),
        blob_top_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    FillerParameter filler_param;
    filler_param.set_std(1);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(this->blob_bottom_);
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~LocallyConnectedLayerTest() {
    delete blob_bottom_;
    delete blob_top_;
  }
  LayerParameter MakeParam(int num_output, int kernel, int stride, int pad,
                           bool bias = true) {
    LayerParameter layer_param;
    LocallyConnectedParameter* p = layer_param.mutable_locally_connected_param();
    p->set_num_output(num_output);
    p->add_kernel_size(kernel);
    p->add_stride(stride);
    p->add_pad(pad);
    p->set_bias_term(bias);
    p->mutable_weight_filler()->set_type("gaussian");
    p->mutable_bias_filler()->set_type("gaussian");
    return layer_param;
  }
  void CheckAgainstReference(const LayerParameter& param, int num_output, int kh,
                             int kw, int sh, int sw, int ph, int pw) {
    LocallyConnectedLayer<Dtype> layer(param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    Blob<Dtype> expected;
    lc_reference(this->blob_bottom_, layer.blobs()[0].get(),
        layer.blobs().size() > 1 ? layer.blobs()[1].get() : NULL,
        num_output, kh, kw, sh, sw, ph, pw, &expected);
    ASSERT_EQ(expected.shape(), this->blob_top_->shape());
    for (int i = 0; i < expected.count(); ++i) {
      EXPECT_NEAR(expected.cpu_data()[i], this->blob_top_->cpu_data()[i], 1e-4) << i;
    }
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(LocallyConnectedLayerTest, TestDtypesAndDevices);

TYPED_TEST(LocallyConnectedLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->MakeParam(4, 3, 2, 0);
  LocallyConnectedLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  // 6x5 input, kernel 3, stride 2: 2x2 output locations.
  EXPECT_EQ(this->blob_top_->num(), 2);
  EXPECT_EQ(this->blob_top_->channels(), 4);
  EXPECT_EQ(this->blob_top_->height(), 2);
  EXPECT_EQ(this->blob_top_->width(), 2);
  ASSERT_EQ(layer.blobs().size(), 2);
  const int weight_shape[] = {2 * 2 * 4, 3, 3, 3};
  EXPECT_EQ(layer.blobs()[0]->shape(), vector<int>(weight_shape, weight_shape + 4));
  const int bias_shape[] = {4, 2, 2};
  EXPECT_EQ(layer.blobs()[1]->shape(), vector<int>(bias_shape, bias_shape + 3));
  // Without bias there is a single blob.
  LayerParameter no_bias = this->MakeParam(4, 3, 2, 0, false);
  LocallyConnectedLayer<Dtype> layer2(no_bias);
  layer2.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(layer2.blobs().size(), 1);
}

TYPED_TEST(LocallyConnectedLayerTest, TestForward) {
  this->CheckAgainstReference(this->MakeParam(4, 3, 1, 0), 4, 3, 3, 1, 1, 0, 0);
}

TYPED_TEST(LocallyConnectedLayerTest, TestForwardGemvAndGemmBatches) {
  // Batches up to gemv_max_batch() take one GEMV per image and location, larger ones
  // one GEMM per location (fast_cpu.hpp): both, with padding and stride, against the
  // reference.
  const int saved = gemv_max_batch();
  for (int limit = 0; limit <= 3; limit += 3) {
    set_gemv_max_batch(limit);
    for (int n = 1; n <= 5; ++n) {
      this->blob_bottom_->Reshape(n, 3, 6, 5);
      FillerParameter filler_param;
      filler_param.set_std(1);
      GaussianFiller<typename TypeParam::Dtype> filler(filler_param);
      filler.Fill(this->blob_bottom_);
      this->CheckAgainstReference(this->MakeParam(3, 3, 2, 1), 3, 3, 3, 2, 2, 1, 1);
    }
  }
  set_gemv_max_batch(saved);
}

TYPED_TEST(LocallyConnectedLayerTest, TestForwardStridePad) {
  this->CheckAgainstReference(this->MakeParam(3, 3, 2, 1), 3, 3, 3, 2, 2, 1, 1);
}

TYPED_TEST(LocallyConnectedLayerTest, TestForwardRectangular) {
  LayerParameter param;
  LocallyConnectedParameter* p = param.mutable_locally_connected_param();
  p->set_num_output(2);
  p->set_kernel_h(2);
  p->set_kernel_w(3);
  p->set_stride_h(1);
  p->set_stride_w(2);
  p->set_pad_h(0);
  p->set_pad_w(1);
  p->mutable_weight_filler()->set_type("gaussian");
  p->mutable_bias_filler()->set_type("gaussian");
  this->CheckAgainstReference(param, 2, 2, 3, 1, 2, 0, 1);
}

TYPED_TEST(LocallyConnectedLayerTest, TestForwardNoBias) {
  this->CheckAgainstReference(this->MakeParam(2, 2, 1, 0, false), 2, 2, 2, 1, 1, 0, 0);
}

// With every location's filters equal, LocallyConnected is a Convolution: same output,
// same input gradient, and its weight gradient summed over locations is Convolution's.
TYPED_TEST(LocallyConnectedLayerTest, TestTiedEqualsConvolution) {
  typedef typename TypeParam::Dtype Dtype;
  const int M = 4, kernel = 3, stride = 2, pad = 1;
  LayerParameter conv_param;
  ConvolutionParameter* cp = conv_param.mutable_convolution_param();
  cp->set_num_output(M);
  cp->add_kernel_size(kernel);
  cp->add_stride(stride);
  cp->add_pad(pad);
  cp->mutable_weight_filler()->set_type("gaussian");
  cp->mutable_bias_filler()->set_type("gaussian");
  ConvolutionLayer<Dtype> conv(conv_param);
  Blob<Dtype> conv_top;
  vector<Blob<Dtype>*> conv_top_vec(1, &conv_top);
  conv.SetUp(this->blob_bottom_vec_, conv_top_vec);

  LocallyConnectedLayer<Dtype> lc(this->MakeParam(M, kernel, stride, pad));
  lc.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const int L = this->blob_top_->height() * this->blob_top_->width();
  const int filters = conv.blobs()[0]->count();
  for (int l = 0; l < L; ++l) {
    caffe_copy(filters, conv.blobs()[0]->cpu_data(),
               lc.blobs()[0]->mutable_cpu_data() + l * filters);
    for (int m = 0; m < M; ++m) {
      lc.blobs()[1]->mutable_cpu_data()[m * L + l] = conv.blobs()[1]->cpu_data()[m];
    }
  }
  conv.Forward(this->blob_bottom_vec_, conv_top_vec);
  lc.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  ASSERT_EQ(conv_top.shape(), this->blob_top_->shape());
  for (int i = 0; i < conv_top.count(); ++i) {
    EXPECT_NEAR(conv_top.cpu_data()[i], this->blob_top_->cpu_data()[i], 1e-4);
  }

  // Backward with one random top gradient through both.
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(&conv_top);
  caffe_copy(conv_top.count(), conv_top.cpu_data(), conv_top.mutable_cpu_diff());
  caffe_copy(conv_top.count(), conv_top.cpu_data(), this->blob_top_->mutable_cpu_diff());
  vector<bool> down(1, true);
  Blob<Dtype> conv_bottom_diff;
  caffe_set(conv.blobs()[0]->count(), Dtype(0), conv.blobs()[0]->mutable_cpu_diff());
  caffe_set(lc.blobs()[0]->count(), Dtype(0), lc.blobs()[0]->mutable_cpu_diff());
  conv.Backward(conv_top_vec, down, this->blob_bottom_vec_);
  conv_bottom_diff.CopyFrom(*this->blob_bottom_, true, true);
  lc.Backward(this->blob_top_vec_, down, this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    EXPECT_NEAR(conv_bottom_diff.cpu_diff()[i], this->blob_bottom_->cpu_diff()[i], 1e-4);
  }
  for (int f = 0; f < filters; ++f) {
    Dtype sum = 0;
    for (int l = 0; l < L; ++l) sum += lc.blobs()[0]->cpu_diff()[l * filters + f];
    EXPECT_NEAR(conv.blobs()[0]->cpu_diff()[f], sum, 1e-4);
  }
}

TYPED_TEST(LocallyConnectedLayerTest, TestPropagateDown) {
  typedef typename TypeParam::Dtype Dtype;
  LocallyConnectedLayer<Dtype> layer(this->MakeParam(3, 2, 1, 0));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1), this->blob_top_->mutable_cpu_diff());
  caffe_set(this->blob_bottom_->count(), Dtype(7), this->blob_bottom_->mutable_cpu_diff());
  caffe_set(layer.blobs()[0]->count(), Dtype(0), layer.blobs()[0]->mutable_cpu_diff());
  vector<bool> down(1, false);
  layer.Backward(this->blob_top_vec_, down, this->blob_bottom_vec_);
  for (int i = 0; i < this->blob_bottom_->count(); ++i) {
    ASSERT_EQ(this->blob_bottom_->cpu_diff()[i], Dtype(7)) << "bottom diff was written";
  }
  Dtype weight_grad = 0;
  for (int i = 0; i < layer.blobs()[0]->count(); ++i) {
    weight_grad += std::abs(layer.blobs()[0]->cpu_diff()[i]);
  }
  EXPECT_GT(weight_grad, 0) << "weight gradient missing when propagate_down is false";
}

TYPED_TEST(LocallyConnectedLayerTest, TestInputSizeIsFixed) {
  typedef typename TypeParam::Dtype Dtype;
  LocallyConnectedLayer<Dtype> layer(this->MakeParam(3, 2, 1, 0));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  this->blob_bottom_->Reshape(2, 3, 7, 5);
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(layer.Reshape(this->blob_bottom_vec_, this->blob_top_vec_),
               "input size is fixed at setup");
}

TYPED_TEST(LocallyConnectedLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 2, 4, 4);
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  LocallyConnectedLayer<Dtype> layer(this->MakeParam(2, 2, 1, 0));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_);
}

TYPED_TEST(LocallyConnectedLayerTest, TestGradientStridePad) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 2, 5, 4);
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  LocallyConnectedLayer<Dtype> layer(this->MakeParam(3, 3, 2, 1));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_);
}

}  // namespace caffe
