#include <vector>

#include "caffe/layers/regression_nll_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void regression_nll_forward_kernel(const int n, const Dtype* d, const Dtype* s,
    const bool gaussian, Dtype* inv, Dtype* values) {
  CUDA_KERNEL_LOOP(i, n) {
    if (gaussian) {
      inv[i] = exp(-2 * s[i]);
      values[i] = Dtype(0.5) * d[i] * d[i] * inv[i] + s[i];
    } else {
      inv[i] = exp(-s[i]);
      values[i] = fabs(d[i]) * inv[i] + s[i];
    }
  }
}

template <typename Dtype>
__global__ void regression_nll_centre_kernel(const int n, const Dtype* d, const Dtype* inv,
    const bool gaussian, const Dtype alpha, Dtype* g) {
  CUDA_KERNEL_LOOP(i, n) {
    const Dtype dd = gaussian ? d[i] : Dtype((d[i] > 0) - (d[i] < 0));
    g[i] = alpha * dd * inv[i];
  }
}

template <typename Dtype>
__global__ void regression_nll_scale_kernel(const int n, const Dtype* d, const Dtype* inv,
    const bool gaussian, const Dtype alpha, Dtype* g) {
  CUDA_KERNEL_LOOP(i, n) {
    const Dtype r = gaussian ? d[i] * d[i] * inv[i] : fabs(d[i]) * inv[i];
    g[i] = alpha * (1 - r);
  }
}

template <typename Dtype>
void RegressionNLLLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  caffe_gpu_sub(count, bottom[0]->gpu_data(), bottom[2]->gpu_data(),
      diff_.mutable_gpu_data());
  // NOLINT_NEXT_LINE(whitespace/operators)
  regression_nll_forward_kernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, diff_.gpu_data(), bottom[1]->gpu_data(), gaussian_,
      scale_inv_.mutable_gpu_data(), values_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  // values may be negative (s < 0): summed as a dot with ones, not asum
  Dtype sum;
  caffe_gpu_dot(count, values_.gpu_data(), ones_.gpu_data(), &sum);
  top[0]->mutable_cpu_data()[0] = sum / bottom[0]->num();
}

template <typename Dtype>
void RegressionNLLLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int count = bottom[0]->count();
  const Dtype alpha = top[0]->cpu_diff()[0] / bottom[0]->num();
  for (int b = 0; b < 3; b += 2) {
    if (!propagate_down[b]) continue;
    // NOLINT_NEXT_LINE(whitespace/operators)
    regression_nll_centre_kernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
        count, diff_.gpu_data(), scale_inv_.gpu_data(), gaussian_,
        b == 0 ? alpha : -alpha, bottom[b]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
  if (propagate_down[1]) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    regression_nll_scale_kernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
        count, diff_.gpu_data(), scale_inv_.gpu_data(), gaussian_, alpha,
        bottom[1]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(RegressionNLLLossLayer);

}  // namespace caffe
