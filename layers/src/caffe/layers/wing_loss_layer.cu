#include <vector>

#include "caffe/layers/wing_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void wing_forward_kernel(const int n, const Dtype* d, const Dtype w,
    const Dtype epsilon, const Dtype c, Dtype* values) {
  CUDA_KERNEL_LOOP(i, n) {
    const Dtype a = fabs(d[i]);
    values[i] = a < w ? w * log1p(a / epsilon) : a - c;
  }
}

template <typename Dtype>
__global__ void wing_backward_kernel(const int n, const Dtype* d, const Dtype w,
    const Dtype epsilon, const Dtype alpha, Dtype* g) {
  CUDA_KERNEL_LOOP(i, n) {
    const Dtype a = fabs(d[i]);
    const Dtype sign = (d[i] > 0) - (d[i] < 0);
    g[i] = alpha * sign * (a < w ? w / (epsilon + a) : Dtype(1));
  }
}

template <typename Dtype>
void WingLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  caffe_gpu_sub(count, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      diff_.mutable_gpu_data());
  // NOLINT_NEXT_LINE(whitespace/operators)
  wing_forward_kernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, diff_.gpu_data(), w_, epsilon_, c_, values_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  Dtype sum;
  caffe_gpu_asum(count, values_.gpu_data(), &sum);  // every value is >= 0
  top[0]->mutable_cpu_data()[0] = sum / bottom[0]->num();
}

template <typename Dtype>
void WingLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int count = bottom[0]->count();
  for (int i = 0; i < 2; ++i) {
    if (!propagate_down[i]) continue;
    const Dtype alpha = (i == 0 ? 1 : -1) * top[0]->cpu_diff()[0] / bottom[i]->num();
    // NOLINT_NEXT_LINE(whitespace/operators)
    wing_backward_kernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
        count, diff_.gpu_data(), w_, epsilon_, alpha, bottom[i]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(WingLossLayer);

}  // namespace caffe
