#include <vector>

#include "caffe/layers/locally_connected_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// The same gathers as the CPU path in locally_connected_layer.cpp, one thread per output
// element; col2im gathers too (no atomics), so results do not depend on thread order.

template <typename Dtype>
__global__ void lc_im2col_kernel(const int count, const Dtype* x, const int num,
    const int channels, const int height, const int width, const int kernel_h,
    const int kernel_w, const int stride_h, const int stride_w, const int pad_h,
    const int pad_w, const int width_out, Dtype* col) {
  const int patch = channels * kernel_h * kernel_w;
  CUDA_KERNEL_LOOP(index, count) {  // index = (l * patch + k) * num + n
    const int n = index % num;
    const int k = (index / num) % patch;
    const int l = index / num / patch;
    const int c = k / (kernel_h * kernel_w);
    const int h = (l / width_out) * stride_h - pad_h + (k / kernel_w) % kernel_h;
    const int w = (l % width_out) * stride_w - pad_w + k % kernel_w;
    col[index] = (h >= 0 && h < height && w >= 0 && w < width) ?
        x[((n * channels + c) * height + h) * width + w] : Dtype(0);
  }
}

template <typename Dtype>
__global__ void lc_col2im_kernel(const int count, const Dtype* col, const int num,
    const int channels, const int height, const int width, const int kernel_h,
    const int kernel_w, const int stride_h, const int stride_w, const int pad_h,
    const int pad_w, const int height_out, const int width_out, Dtype* x) {
  const int patch = channels * kernel_h * kernel_w;
  CUDA_KERNEL_LOOP(index, count) {  // index = ((n * channels + c) * height + h) * width + w
    const int w = index % width;
    const int h = (index / width) % height;
    const int c = (index / width / height) % channels;
    const int n = index / width / height / channels;
    Dtype sum = 0;
    for (int i = 0; i < kernel_h; ++i) {
      const int hs = h + pad_h - i;
      if (hs < 0 || hs % stride_h != 0 || hs / stride_h >= height_out) continue;
      for (int j = 0; j < kernel_w; ++j) {
        const int ws = w + pad_w - j;
        if (ws < 0 || ws % stride_w != 0 || ws / stride_w >= width_out) continue;
        const int l = (hs / stride_h) * width_out + ws / stride_w;
        const int k = (c * kernel_h + i) * kernel_w + j;
        sum += col[(l * patch + k) * num + n];
      }
    }
    x[index] = sum;
  }
}

// out (L x M x N) <-> top (N x M x L), one thread per element of top.
template <typename Dtype>
__global__ void lc_transpose_kernel(const int count, const int num,
    const int num_output, const int locations, const bool to_top, Dtype* out,
    Dtype* top) {
  CUDA_KERNEL_LOOP(index, count) {  // index = (n * num_output + m) * locations + l
    const int l = index % locations;
    const int m = (index / locations) % num_output;
    const int n = index / locations / num_output;
    Dtype* o = out + (l * num_output + m) * num + n;
    if (to_top) { top[index] = *o; } else { *o = top[index]; }
  }
}

template <typename Dtype>
void LocallyConnectedLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const int M = num_output_, K = patch_size_, N = num_;
  const Dtype* weight = this->blobs_[0]->gpu_data();
  Dtype* col = col_buffer_.mutable_gpu_data();
  Dtype* out = out_buffer_.mutable_gpu_data();
  const int col_count = col_buffer_.count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  lc_im2col_kernel<Dtype><<<CAFFE_GET_BLOCKS(col_count), CAFFE_CUDA_NUM_THREADS>>>(
      col_count, bottom[0]->gpu_data(), N, channels_, height_, width_, kernel_h_,
      kernel_w_, stride_h_, stride_w_, pad_h_, pad_w_, width_out_, col);
  CUDA_POST_KERNEL_CHECK;
  for (int l = 0; l < locations_; ++l) {
    caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, M, N, K, Dtype(1),
        weight + static_cast<size_t>(l) * M * K, col + static_cast<size_t>(l) * K * N,
        Dtype(0), out + static_cast<size_t>(l) * M * N);
  }
  Dtype* top_data = top[0]->mutable_gpu_data();
  const int top_count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  lc_transpose_kernel<Dtype><<<CAFFE_GET_BLOCKS(top_count), CAFFE_CUDA_NUM_THREADS>>>(
      top_count, N, M, locations_, true, out, top_data);
  CUDA_POST_KERNEL_CHECK;
  if (bias_term_) {
    caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N, M * locations_, 1, Dtype(1),
        bias_multiplier_.gpu_data(), this->blobs_[1]->gpu_data(), Dtype(1), top_data);
  }
}

template <typename Dtype>
void LocallyConnectedLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int M = num_output_, K = patch_size_, N = num_;
  const bool weight_down = this->param_propagate_down_[0];
  const bool bias_down = bias_term_ && this->param_propagate_down_[1];
  if (!weight_down && !bias_down && !propagate_down[0]) return;
  const Dtype* top_diff = top[0]->gpu_diff();
  if (bias_down) {
    caffe_gpu_gemv<Dtype>(CblasTrans, N, M * locations_, Dtype(1), top_diff,
        bias_multiplier_.gpu_data(), Dtype(1), this->blobs_[1]->mutable_gpu_diff());
  }
  if (!weight_down && !propagate_down[0]) return;
  Dtype* out_diff = out_buffer_.mutable_gpu_diff();
  const int top_count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  lc_transpose_kernel<Dtype><<<CAFFE_GET_BLOCKS(top_count), CAFFE_CUDA_NUM_THREADS>>>(
      top_count, N, M, locations_, false, out_diff, const_cast<Dtype*>(top_diff));
  CUDA_POST_KERNEL_CHECK;
  if (weight_down) {
    Dtype* col = col_buffer_.mutable_gpu_data();
    const int col_count = col_buffer_.count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    lc_im2col_kernel<Dtype><<<CAFFE_GET_BLOCKS(col_count), CAFFE_CUDA_NUM_THREADS>>>(
        col_count, bottom[0]->gpu_data(), N, channels_, height_, width_, kernel_h_,
        kernel_w_, stride_h_, stride_w_, pad_h_, pad_w_, width_out_, col);
    CUDA_POST_KERNEL_CHECK;
    Dtype* weight_diff = this->blobs_[0]->mutable_gpu_diff();
    for (int l = 0; l < locations_; ++l) {
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, M, K, N, Dtype(1),
          out_diff + static_cast<size_t>(l) * M * N, col + static_cast<size_t>(l) * K * N,
          Dtype(1), weight_diff + static_cast<size_t>(l) * M * K);
    }
  }
  if (propagate_down[0]) {
    const Dtype* weight = this->blobs_[0]->gpu_data();
    Dtype* col_diff = col_buffer_.mutable_gpu_diff();
    for (int l = 0; l < locations_; ++l) {
      caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, K, N, M, Dtype(1),
          weight + static_cast<size_t>(l) * M * K, out_diff + static_cast<size_t>(l) * M * N,
          Dtype(0), col_diff + static_cast<size_t>(l) * K * N);
    }
    const int bottom_count = bottom[0]->count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    lc_col2im_kernel<Dtype><<<CAFFE_GET_BLOCKS(bottom_count), CAFFE_CUDA_NUM_THREADS>>>(
        bottom_count, col_diff, N, channels_, height_, width_, kernel_h_, kernel_w_,
        stride_h_, stride_w_, pad_h_, pad_w_, height_out_, width_out_,
        bottom[0]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(LocallyConnectedLayer);

}  // namespace caffe
