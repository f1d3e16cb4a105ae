#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/regression_nll_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Plain double-precision reference: (1/N) sum of |d| e^-s + s (Laplace) or
// d^2 e^-2s / 2 + s (Gaussian), d = mu - y.
template <typename Dtype>
double nll_reference(const Blob<Dtype>& mu, const Blob<Dtype>& s, const Blob<Dtype>& y,
                     bool gaussian) {
  double sum = 0;
  for (int i = 0; i < mu.count(); ++i) {
    const double d = static_cast<double>(mu.cpu_data()[i]) - y.cpu_data()[i];
    const double ls = s.cpu_data()[i];
    sum += gaussian ? 0.5 * d * d * std::exp(-2 * ls) + ls : std::fabs(d) * std::exp(-ls) + ls;
  }
  return sum / mu.num();
}

template <typename TypeParam>
class RegressionNLLLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  RegressionNLLLossLayerTest()
      : blob_bottom_mu_(new Blob<Dtype>(6, 10, 1, 1)),
        blob_bottom_scale_(new Blob<Dtype>(6, 10, 1, 1)),
        blob_bottom_target_(new Blob<Dtype>(6, 10, 1, 1)),
        blob_top_loss_(new Blob<Dtype>()) {
    blob_bottom_vec_.push_back(blob_bottom_mu_);
    blob_bottom_vec_.push_back(blob_bottom_scale_);
    blob_bottom_vec_.push_back(blob_bottom_target_);
    blob_top_vec_.push_back(blob_top_loss_);
  }
  virtual ~RegressionNLLLossLayerTest() {
    delete blob_bottom_mu_;
    delete blob_bottom_scale_;
    delete blob_bottom_target_;
    delete blob_top_loss_;
  }
  // Gaussian targets; differences mu - y of magnitude 0.05..0.5 with a random sign (no
  // finite-difference step reaches the Laplace kink at 0); log-scales uniform in -1..1.
  void Fill() {
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_target_);
    const int count = blob_bottom_mu_->count();
    vector<Dtype> u(count), sign(count);
    caffe_rng_uniform<Dtype>(count, 0, 1, u.data());
    caffe_rng_uniform<Dtype>(count, -1, 1, sign.data());
    caffe_rng_uniform<Dtype>(count, -1, 1, blob_bottom_scale_->mutable_cpu_data());
    Dtype* mu = blob_bottom_mu_->mutable_cpu_data();
    const Dtype* y = blob_bottom_target_->cpu_data();
    for (int i = 0; i < count; ++i) {
      const Dtype mag = 0.05 + 0.45 * u[i];
      mu[i] = y[i] + (sign[i] < 0 ? -mag : mag);
    }
  }
  LayerParameter MakeParam(bool gaussian) {
    LayerParameter param;
    param.mutable_regression_nll_param()->set_distribution(gaussian ?
        RegressionNLLParameter_Distribution_GAUSSIAN :
        RegressionNLLParameter_Distribution_LAPLACE);
    return param;
  }

  Blob<Dtype>* const blob_bottom_mu_;
  Blob<Dtype>* const blob_bottom_scale_;
  Blob<Dtype>* const blob_bottom_target_;
  Blob<Dtype>* const blob_top_loss_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(RegressionNLLLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(RegressionNLLLossLayerTest, TestDefaultIsLaplace) {
  LayerParameter param;
  EXPECT_EQ(param.regression_nll_param().distribution(),
            RegressionNLLParameter_Distribution_LAPLACE);
}

TYPED_TEST(RegressionNLLLossLayerTest, TestForwardHandValues) {
  typedef typename TypeParam::Dtype Dtype;
  // Two samples, two coordinates each; d = mu - y and s:
  //   d = 3,  s = 0       Laplace 3               Gaussian 4.5
  //   d = -1, s = ln 2    0.5 + 0.693147          0.125 + 0.693147
  //   d = 0,  s = -1      -1                      -1
  //   d = 2,  s = 1       2/e + 1 = 1.735759      2/e^2 + 1 = 1.270671
  // Laplace (3 + 1.193147 - 1 + 1.735759) / 2 = 2.464453
  // Gaussian (4.5 + 0.818147 - 1 + 1.270671) / 2 = 2.794409
  Blob<Dtype> mu(2, 2, 1, 1), s(2, 2, 1, 1), y(2, 2, 1, 1), top;
  const Dtype m[] = {4, 0, 5, 3}, ls[] = {0, Dtype(std::log(2.0)), -1, 1}, t[] = {1, 1, 5, 1};
  std::copy(m, m + 4, mu.mutable_cpu_data());
  std::copy(ls, ls + 4, s.mutable_cpu_data());
  std::copy(t, t + 4, y.mutable_cpu_data());
  vector<Blob<Dtype>*> bottom_vec, top_vec;
  bottom_vec.push_back(&mu);
  bottom_vec.push_back(&s);
  bottom_vec.push_back(&y);
  top_vec.push_back(&top);
  const double expected[] = {2.464453, 2.794409};
  for (int g = 0; g < 2; ++g) {
    RegressionNLLLossLayer<Dtype> layer(this->MakeParam(g == 1));
    layer.SetUp(bottom_vec, top_vec);
    layer.Forward(bottom_vec, top_vec);
    EXPECT_NEAR(top.cpu_data()[0], expected[g], 1e-5);
  }
}

TYPED_TEST(RegressionNLLLossLayerTest, TestForwardMatchesReference) {
  typedef typename TypeParam::Dtype Dtype;
  for (int g = 0; g < 2; ++g) {
    this->Fill();
    RegressionNLLLossLayer<Dtype> layer(this->MakeParam(g == 1));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const double expected = nll_reference(*this->blob_bottom_mu_, *this->blob_bottom_scale_,
                                          *this->blob_bottom_target_, g == 1);
    EXPECT_NEAR(this->blob_top_loss_->cpu_data()[0], expected,
                1e-5 * std::fabs(expected) + 1e-5);
  }
}

TYPED_TEST(RegressionNLLLossLayerTest, TestScaleGradientVanishesAtTheError) {
  typedef typename TypeParam::Dtype Dtype;
  // The loss is smallest in s where e^s = |d| (Laplace) or e^s = |d| (Gaussian, one
  // sample's RMS error): there d E / d s = 0; below it is negative, above positive.
  for (int g = 0; g < 2; ++g) {
    this->Fill();
    const int count = this->blob_bottom_mu_->count();
    Dtype* s = this->blob_bottom_scale_->mutable_cpu_data();
    for (int i = 0; i < count; ++i) {
      const Dtype d = this->blob_bottom_mu_->cpu_data()[i] -
                      this->blob_bottom_target_->cpu_data()[i];
      s[i] = std::log(std::fabs(d)) + (i % 3 == 0 ? 0 : (i % 3 == 1 ? -0.5 : 0.5));
    }
    RegressionNLLLossLayer<Dtype> layer(this->MakeParam(g == 1));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    vector<bool> propagate(3, true);
    layer.Backward(this->blob_top_vec_, propagate, this->blob_bottom_vec_);
    const Dtype* gs = this->blob_bottom_scale_->cpu_diff();
    for (int i = 0; i < count; ++i) {
      if (i % 3 == 0) EXPECT_NEAR(gs[i], 0, 1e-5);
      if (i % 3 == 1) EXPECT_LT(gs[i], 0);
      if (i % 3 == 2) EXPECT_GT(gs[i], 0);
    }
  }
}

TYPED_TEST(RegressionNLLLossLayerTest, TestBackwardMatchesFormula) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype kLossWeight = 2.5;
  for (int g = 0; g < 2; ++g) {
    this->Fill();
    LayerParameter param = this->MakeParam(g == 1);
    param.add_loss_weight(kLossWeight);
    RegressionNLLLossLayer<Dtype> layer(param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    vector<bool> propagate(3, true);
    layer.Backward(this->blob_top_vec_, propagate, this->blob_bottom_vec_);
    const int n = this->blob_bottom_mu_->num();
    for (int i = 0; i < this->blob_bottom_mu_->count(); ++i) {
      const double d = static_cast<double>(this->blob_bottom_mu_->cpu_data()[i]) -
                       this->blob_bottom_target_->cpu_data()[i];
      const double s = this->blob_bottom_scale_->cpu_data()[i];
      const double gmu = kLossWeight / n * (g == 1 ? d * std::exp(-2 * s)
                                                   : (d > 0 ? 1 : -1) * std::exp(-s));
      const double gs = kLossWeight / n * (1 - (g == 1 ? d * d * std::exp(-2 * s)
                                                       : std::fabs(d) * std::exp(-s)));
      EXPECT_NEAR(this->blob_bottom_mu_->cpu_diff()[i], gmu, 1e-5 * std::fabs(gmu) + 1e-7);
      EXPECT_NEAR(this->blob_bottom_target_->cpu_diff()[i], -gmu,
                  1e-5 * std::fabs(gmu) + 1e-7);
      EXPECT_NEAR(this->blob_bottom_scale_->cpu_diff()[i], gs, 1e-5 * std::fabs(gs) + 1e-7);
    }
  }
}

TYPED_TEST(RegressionNLLLossLayerTest, TestGradientLaplace) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill();
  LayerParameter param = this->MakeParam(false);
  param.add_loss_weight(3.7);
  RegressionNLLLossLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  // |mu - y| >= 0.05: a step of 1e-3 never crosses the kink at 0.
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_);
}

TYPED_TEST(RegressionNLLLossLayerTest, TestGradientGaussian) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill();
  LayerParameter param = this->MakeParam(true);
  param.add_loss_weight(3.7);
  RegressionNLLLossLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_, this->blob_top_vec_);
}

}  // namespace caffe
