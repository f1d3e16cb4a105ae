#include <cmath>
#include <vector>

#include "caffe/layers/regression_nll_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void RegressionNLLLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  gaussian_ = this->layer_param_.regression_nll_param().distribution() ==
      RegressionNLLParameter_Distribution_GAUSSIAN;
}

template <typename Dtype>
void RegressionNLLLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::Reshape(bottom, top);
  for (int i = 1; i < 3; ++i) {
    CHECK_EQ(bottom[0]->num(), bottom[i]->num())
        << "RegressionNLLLoss layer " << this->layer_param_.name()
        << ": inputs must have the same number of samples";
    CHECK_EQ(bottom[0]->count(1), bottom[i]->count(1))
        << "RegressionNLLLoss layer " << this->layer_param_.name()
        << ": centre, log-scale and target must have the same dimension";
  }
  diff_.ReshapeLike(*bottom[0]);
  scale_inv_.ReshapeLike(*bottom[0]);
  values_.ReshapeLike(*bottom[0]);
  if (ones_.count() != bottom[0]->count()) {
    ones_.ReshapeLike(*bottom[0]);
    caffe_set(ones_.count(), Dtype(1), ones_.mutable_cpu_data());
  }
}

template <typename Dtype>
void RegressionNLLLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  caffe_sub(count, bottom[0]->cpu_data(), bottom[2]->cpu_data(),
      diff_.mutable_cpu_data());
  const Dtype* d = diff_.cpu_data();
  const Dtype* s = bottom[1]->cpu_data();
  Dtype* inv = scale_inv_.mutable_cpu_data();
  Dtype sum = 0;
  for (int i = 0; i < count; ++i) {
    if (gaussian_) {
      inv[i] = std::exp(-2 * s[i]);
      sum += Dtype(0.5) * d[i] * d[i] * inv[i] + s[i];
    } else {
      inv[i] = std::exp(-s[i]);
      sum += std::fabs(d[i]) * inv[i] + s[i];
    }
  }
  top[0]->mutable_cpu_data()[0] = sum / bottom[0]->num();
}

template <typename Dtype>
void RegressionNLLLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int count = bottom[0]->count();
  const Dtype alpha = top[0]->cpu_diff()[0] / bottom[0]->num();
  const Dtype* d = diff_.cpu_data();
  const Dtype* inv = scale_inv_.cpu_data();
  // d E / d mu = alpha * (sign(d) e^{-s} | d e^{-2s}); the target gets its negative.
  for (int b = 0; b < 3; b += 2) {
    if (!propagate_down[b]) continue;
    const Dtype sign_b = b == 0 ? 1 : -1;
    Dtype* g = bottom[b]->mutable_cpu_diff();
    for (int i = 0; i < count; ++i) {
      const Dtype dd = gaussian_ ? d[i] : Dtype((d[i] > 0) - (d[i] < 0));
      g[i] = sign_b * alpha * dd * inv[i];
    }
  }
  // d E / d s = alpha * (1 - |d| e^{-s} | 1 - d^2 e^{-2s})
  if (propagate_down[1]) {
    Dtype* g = bottom[1]->mutable_cpu_diff();
    for (int i = 0; i < count; ++i) {
      const Dtype r = gaussian_ ? d[i] * d[i] * inv[i] : std::fabs(d[i]) * inv[i];
      g[i] = alpha * (1 - r);
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(RegressionNLLLossLayer);
#endif

INSTANTIATE_CLASS(RegressionNLLLossLayer);
REGISTER_LAYER_CLASS(RegressionNLLLoss);

}  // namespace caffe
