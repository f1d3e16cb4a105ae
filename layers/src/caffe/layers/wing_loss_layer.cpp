#include <cmath>
#include <vector>

#include "caffe/layers/wing_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void WingLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const WingLossParameter& p = this->layer_param_.wing_loss_param();
  CHECK_GT(p.w(), 0) << "WingLoss layer " << this->layer_param_.name()
      << ": w must be positive";
  CHECK_GT(p.epsilon(), 0) << "WingLoss layer " << this->layer_param_.name()
      << ": epsilon must be positive";
  w_ = p.w();
  epsilon_ = p.epsilon();
  c_ = w_ - w_ * std::log1p(w_ / epsilon_);
}

template <typename Dtype>
void WingLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::Reshape(bottom, top);
  CHECK_EQ(bottom[0]->count(1), bottom[1]->count(1))
      << "WingLoss layer " << this->layer_param_.name()
      << ": inputs must have the same dimension";
  diff_.ReshapeLike(*bottom[0]);
  values_.ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void WingLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  caffe_sub(count, bottom[0]->cpu_data(), bottom[1]->cpu_data(),
      diff_.mutable_cpu_data());
  const Dtype* d = diff_.cpu_data();
  Dtype sum = 0;
  for (int i = 0; i < count; ++i) {
    const Dtype a = std::fabs(d[i]);
    sum += a < w_ ? w_ * std::log1p(a / epsilon_) : a - c_;
  }
  top[0]->mutable_cpu_data()[0] = sum / bottom[0]->num();
}

template <typename Dtype>
void WingLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int count = bottom[0]->count();
  const Dtype* d = diff_.cpu_data();
  for (int i = 0; i < 2; ++i) {
    if (!propagate_down[i]) continue;
    const Dtype alpha = (i == 0 ? 1 : -1) * top[0]->cpu_diff()[0] / bottom[i]->num();
    Dtype* g = bottom[i]->mutable_cpu_diff();
    for (int j = 0; j < count; ++j) {
      const Dtype a = std::fabs(d[j]);
      const Dtype sign = (d[j] > 0) - (d[j] < 0);
      g[j] = alpha * sign * (a < w_ ? w_ / (epsilon_ + a) : Dtype(1));
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(WingLossLayer);
#endif

INSTANTIATE_CLASS(WingLossLayer);
REGISTER_LAYER_CLASS(WingLoss);

}  // namespace caffe
