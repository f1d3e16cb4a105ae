#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/wing_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Plain double-precision reference of the loss: (1/N) sum wing(pred - target).
template <typename Dtype>
double wing_reference(const Blob<Dtype>& pred, const Blob<Dtype>& target, double w,
                      double epsilon) {
  const double c = w - w * std::log(1 + w / epsilon);
  double sum = 0;
  for (int i = 0; i < pred.count(); ++i) {
    const double a = std::fabs(static_cast<double>(pred.cpu_data()[i]) -
                               target.cpu_data()[i]);
    sum += a < w ? w * std::log(1 + a / epsilon) : a - c;
  }
  return sum / pred.num();
}

template <typename TypeParam>
class WingLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  WingLossLayerTest()
      : blob_bottom_pred_(new Blob<Dtype>(7, 10, 1, 1)),
        blob_bottom_target_(new Blob<Dtype>(7, 10, 1, 1)),
        blob_top_loss_(new Blob<Dtype>()) {
    blob_bottom_vec_.push_back(blob_bottom_pred_);
    blob_bottom_vec_.push_back(blob_bottom_target_);
    blob_top_vec_.push_back(blob_top_loss_);
  }
  virtual ~WingLossLayerTest() {
    delete blob_bottom_pred_;
    delete blob_bottom_target_;
    delete blob_top_loss_;
  }
  // Targets are Gaussian; every difference pred - target has a magnitude drawn from
  // (0.1, 0.9) w or (1.1, 2) w with a random sign, so both branches are exercised and
  // no finite difference step crosses the kinks at 0 and at |x| = w.
  void Fill(Dtype w) {
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_target_);
    const int count = blob_bottom_pred_->count();
    vector<Dtype> u(count), side(count), sign(count);
    caffe_rng_uniform<Dtype>(count, 0, 1, u.data());
    caffe_rng_uniform<Dtype>(count, 0, 1, side.data());
    caffe_rng_uniform<Dtype>(count, -1, 1, sign.data());
    Dtype* pred = blob_bottom_pred_->mutable_cpu_data();
    const Dtype* target = blob_bottom_target_->cpu_data();
    for (int i = 0; i < count; ++i) {
      const Dtype mag = side[i] < 0.5 ? w * (0.1 + 0.8 * u[i]) : w * (1.1 + 0.9 * u[i]);
      pred[i] = target[i] + (sign[i] < 0 ? -mag : mag);
    }
  }
  LayerParameter MakeParam(float w, float epsilon) {
    LayerParameter param;
    param.mutable_wing_loss_param()->set_w(w);
    param.mutable_wing_loss_param()->set_epsilon(epsilon);
    return param;
  }

  Blob<Dtype>* const blob_bottom_pred_;
  Blob<Dtype>* const blob_bottom_target_;
  Blob<Dtype>* const blob_top_loss_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(WingLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(WingLossLayerTest, TestForwardHandValues) {
  typedef typename TypeParam::Dtype Dtype;
  // Two samples, two coordinates each, w = 10, epsilon = 2:
  //   x = 3  -> 10 ln 2.5           =  9.162907
  //   x = -1 -> 10 ln 1.5           =  4.054651
  //   x = 12 -> 12 - (10 - 10 ln 6) = 19.917595
  //   x = 0  -> 0
  // loss = (9.162907 + 4.054651 + 19.917595 + 0) / 2 = 16.567577
  Blob<Dtype> pred(2, 2, 1, 1), target(2, 2, 1, 1), top;
  const Dtype p[] = {4, 0, 13, 5}, t[] = {1, 1, 1, 5};
  std::copy(p, p + 4, pred.mutable_cpu_data());
  std::copy(t, t + 4, target.mutable_cpu_data());
  vector<Blob<Dtype>*> bottom_vec, top_vec;
  bottom_vec.push_back(&pred);
  bottom_vec.push_back(&target);
  top_vec.push_back(&top);
  WingLossLayer<Dtype> layer(this->MakeParam(10, 2));
  layer.SetUp(bottom_vec, top_vec);
  layer.Forward(bottom_vec, top_vec);
  EXPECT_NEAR(top.cpu_data()[0], 16.567577, 1e-4);
}

TYPED_TEST(WingLossLayerTest, TestForwardMatchesReference) {
  typedef typename TypeParam::Dtype Dtype;
  const float ws[] = {10, 0.25};
  const float eps[] = {2, 0.05};
  for (int k = 0; k < 2; ++k) {
    this->Fill(ws[k]);
    WingLossLayer<Dtype> layer(this->MakeParam(ws[k], eps[k]));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const double expected = wing_reference(*this->blob_bottom_pred_,
        *this->blob_bottom_target_, ws[k], eps[k]);
    EXPECT_NEAR(this->blob_top_loss_->cpu_data()[0], expected,
                1e-5 * std::fabs(expected) + 1e-6);
  }
}

TYPED_TEST(WingLossLayerTest, TestContinuousAtW) {
  typedef typename TypeParam::Dtype Dtype;
  // Just inside and just outside |x| = w the two branches give the same value.
  Blob<Dtype> pred(1, 2, 1, 1), target(1, 2, 1, 1), top_in, top_out;
  target.mutable_cpu_data()[0] = target.mutable_cpu_data()[1] = 0;
  vector<Blob<Dtype>*> bottom_vec, top_vec;
  bottom_vec.push_back(&pred);
  bottom_vec.push_back(&target);
  WingLossLayer<Dtype> layer(this->MakeParam(0.25, 0.05));
  top_vec.push_back(&top_in);
  layer.SetUp(bottom_vec, top_vec);
  pred.mutable_cpu_data()[0] = 0.25 - 1e-4;
  pred.mutable_cpu_data()[1] = -(0.25 - 1e-4);
  layer.Forward(bottom_vec, top_vec);
  const Dtype inside = top_in.cpu_data()[0];
  pred.mutable_cpu_data()[0] = 0.25 + 1e-4;
  pred.mutable_cpu_data()[1] = -(0.25 + 1e-4);
  layer.Forward(bottom_vec, top_vec);
  const Dtype outside = top_in.cpu_data()[0];
  EXPECT_GT(outside, inside);
  EXPECT_NEAR(inside, outside, 1e-3);
  EXPECT_NEAR(inside, 2 * 0.25 * std::log(1 + 0.25 / 0.05), 1e-3);
}

TYPED_TEST(WingLossLayerTest, TestBackwardMatchesFormula) {
  typedef typename TypeParam::Dtype Dtype;
  // d loss / d pred = loss_weight / N * sign(x) * (w / (epsilon + |x|) or 1), and the
  // target gets its negative.
  const Dtype w = 0.25, eps = 0.05, kLossWeight = 3.7;
  this->Fill(w);
  LayerParameter param = this->MakeParam(w, eps);
  param.add_loss_weight(kLossWeight);
  WingLossLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  vector<bool> propagate(2, true);
  layer.Backward(this->blob_top_vec_, propagate, this->blob_bottom_vec_);
  const int n = this->blob_bottom_pred_->num();
  int inside = 0;
  for (int i = 0; i < this->blob_bottom_pred_->count(); ++i) {
    const double x = static_cast<double>(this->blob_bottom_pred_->cpu_data()[i]) -
                     this->blob_bottom_target_->cpu_data()[i];
    const double a = std::fabs(x);
    inside += a < w;
    const double g = kLossWeight / n * (x > 0 ? 1 : -1) * (a < w ? w / (eps + a) : 1);
    EXPECT_NEAR(this->blob_bottom_pred_->cpu_diff()[i], g, 1e-5 * std::fabs(g));
    EXPECT_NEAR(this->blob_bottom_target_->cpu_diff()[i], -g, 1e-5 * std::fabs(g));
  }
  // both branches were exercised
  EXPECT_GT(inside, 0);
  EXPECT_LT(inside, this->blob_bottom_pred_->count());
}

TYPED_TEST(WingLossLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype w = 0.25, eps = 0.05;
  this->Fill(w);
  LayerParameter param = this->MakeParam(w, eps);
  const Dtype kLossWeight = 3.7;
  param.add_loss_weight(kLossWeight);
  WingLossLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  // Differences are at least 0.025 from every kink; a step of 2e-3 stays on one branch.
  GradientChecker<Dtype> checker(2e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

TYPED_TEST(WingLossLayerTest, TestGradientPaperParameters) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(10);
  WingLossLayer<Dtype> layer(this->MakeParam(10, 2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

}  // namespace caffe
