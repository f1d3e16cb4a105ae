#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/locally_connected_layer.hpp"
#include "caffe/util/fast_cpu.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

/// Gathers every input patch into col, laid out L x K x N: col[(l K + k) N + n].
template <typename Dtype>
static void lc_im2col_cpu(const Dtype* x, int num, int channels, int height,
    int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
    int pad_h, int pad_w, int height_out, int width_out, Dtype* col) {
  const int patch = channels * kernel_h * kernel_w;
  const int image = channels * height * width;
  for (int l = 0; l < height_out * width_out; ++l) {
    const int ho = l / width_out, wo = l % width_out;
    for (int k = 0; k < patch; ++k) {
      const int c = k / (kernel_h * kernel_w);
      const int h = ho * stride_h - pad_h + (k / kernel_w) % kernel_h;
      const int w = wo * stride_w - pad_w + k % kernel_w;
      Dtype* dst = col + (static_cast<size_t>(l) * patch + k) * num;
      if (h < 0 || h >= height || w < 0 || w >= width) {
        caffe_set(num, Dtype(0), dst);
      } else {
        const Dtype* src = x + (c * height + h) * width + w;
        for (int n = 0; n < num; ++n) { dst[n] = src[n * image]; }
      }
    }
  }
}

/// The adjoint of lc_im2col_cpu: every input pixel sums the patch entries it fed.
template <typename Dtype>
static void lc_col2im_cpu(const Dtype* col, int num, int channels, int height,
    int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
    int pad_h, int pad_w, int height_out, int width_out, Dtype* x) {
  const int patch = channels * kernel_h * kernel_w;
  for (int n = 0; n < num; ++n) {
    for (int c = 0; c < channels; ++c) {
      for (int h = 0; h < height; ++h) {
        for (int w = 0; w < width; ++w) {
          Dtype sum = 0;
          for (int i = 0; i < kernel_h; ++i) {
            const int hs = h + pad_h - i;
            if (hs < 0 || hs % stride_h != 0 || hs / stride_h >= height_out) continue;
            for (int j = 0; j < kernel_w; ++j) {
              const int ws = w + pad_w - j;
              if (ws < 0 || ws % stride_w != 0 || ws / stride_w >= width_out) continue;
              const int l = (hs / stride_h) * width_out + ws / stride_w;
              const int k = (c * kernel_h + i) * kernel_w + j;
              sum += col[(static_cast<size_t>(l) * patch + k) * num + n];
            }
          }
          x[((n * channels + c) * height + h) * width + w] = sum;
        }
      }
    }
  }
}

/// out (L x M x N) <-> top (N x M x L); to_top chooses the direction.
template <typename Dtype>
static void lc_transpose_cpu(int num, int num_output, int locations,
    bool to_top, Dtype* out, Dtype* top) {
  for (int l = 0; l < locations; ++l) {
    for (int m = 0; m < num_output; ++m) {
      Dtype* o = out + (static_cast<size_t>(l) * num_output + m) * num;
      for (int n = 0; n < num; ++n) {
        Dtype* t = top + (n * num_output + m) * locations + l;
        if (to_top) { *t = o[n]; } else { o[n] = *t; }
      }
    }
  }
}

/// y = A x for a row-major M x K matrix and strided vectors (one image's column of the
/// L x K x N patch buffer, and of the L x M x N output buffer).
static inline void lc_gemv_strided(int M, int K, const float* A, const float* x, int incx,
    float* y, int incy) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, M, K, 1.f, A, K, x, incx, 0.f, y, incy);
}
static inline void lc_gemv_strided(int M, int K, const double* A, const double* x,
    int incx, double* y, int incy) {
  cblas_dgemv(CblasRowMajor, CblasNoTrans, M, K, 1., A, K, x, incx, 0., y, incy);
}

template <typename Dtype>
void LocallyConnectedLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const LocallyConnectedParameter& p = this->layer_param_.locally_connected_param();
  CHECK_EQ(bottom[0]->num_axes(), 4)
      << "LocallyConnected takes N x C x H x W input";
  // Kernel, stride and pad as Convolution reads them (2D only).
  if (p.has_kernel_h() || p.has_kernel_w()) {
    CHECK(p.has_kernel_h() && p.has_kernel_w())
        << "kernel_h and kernel_w go together";
    CHECK_EQ(p.kernel_size_size(), 0) << "kernel_size or kernel_h/w, not both";
    kernel_h_ = p.kernel_h();
    kernel_w_ = p.kernel_w();
  } else {
    CHECK(p.kernel_size_size() == 1 || p.kernel_size_size() == 2)
        << "kernel_size takes one value or two (height, width)";
    kernel_h_ = p.kernel_size(0);
    kernel_w_ = p.kernel_size(p.kernel_size_size() - 1);
  }
  if (p.has_stride_h() || p.has_stride_w()) {
    CHECK(p.has_stride_h() && p.has_stride_w()) << "stride_h and stride_w go together";
    stride_h_ = p.stride_h();
    stride_w_ = p.stride_w();
  } else {
    CHECK_LE(p.stride_size(), 2) << "stride takes one value or two";
    stride_h_ = p.stride_size() ? p.stride(0) : 1;
    stride_w_ = p.stride_size() ? p.stride(p.stride_size() - 1) : 1;
  }
  if (p.has_pad_h() || p.has_pad_w()) {
    pad_h_ = p.pad_h();
    pad_w_ = p.pad_w();
  } else {
    CHECK_LE(p.pad_size(), 2) << "pad takes one value or two";
    pad_h_ = p.pad_size() ? p.pad(0) : 0;
    pad_w_ = p.pad_size() ? p.pad(p.pad_size() - 1) : 0;
  }
  CHECK_GT(kernel_h_, 0) << "kernel size must be positive";
  CHECK_GT(kernel_w_, 0) << "kernel size must be positive";
  CHECK_GT(stride_h_, 0) << "stride must be positive";
  CHECK_GT(stride_w_, 0) << "stride must be positive";
  num_output_ = p.num_output();
  CHECK_GT(num_output_, 0) << "num_output must be positive";
  bias_term_ = p.bias_term();

  channels_ = bottom[0]->channels();
  height_ = bottom[0]->height();
  width_ = bottom[0]->width();
  height_out_ = (height_ + 2 * pad_h_ - kernel_h_) / stride_h_ + 1;
  width_out_ = (width_ + 2 * pad_w_ - kernel_w_) / stride_w_ + 1;
  CHECK_GT(height_out_, 0) << "kernel taller than the padded input";
  CHECK_GT(width_out_, 0) << "kernel wider than the padded input";
  locations_ = height_out_ * width_out_;
  patch_size_ = channels_ * kernel_h_ * kernel_w_;

  vector<int> weight_shape(4);
  weight_shape[0] = locations_ * num_output_;
  weight_shape[1] = channels_;
  weight_shape[2] = kernel_h_;
  weight_shape[3] = kernel_w_;
  vector<int> bias_shape(3);
  bias_shape[0] = num_output_;
  bias_shape[1] = height_out_;
  bias_shape[2] = width_out_;
  if (this->blobs_.size() > 0) {
    CHECK_EQ(this->blobs_.size(), 1 + bias_term_) << "Incorrect number of weight blobs";
    CHECK(this->blobs_[0]->shape() == weight_shape)
        << "weights have shape " << this->blobs_[0]->shape_string()
        << ", the layer needs " << Blob<Dtype>(weight_shape).shape_string();
    if (bias_term_) {
      CHECK(this->blobs_[1]->shape() == bias_shape)
          << "bias has shape " << this->blobs_[1]->shape_string()
          << ", the layer needs " << Blob<Dtype>(bias_shape).shape_string();
    }
    LOG(INFO) << "Skipping parameter initialization";
  } else {
    this->blobs_.resize(1 + bias_term_);
    this->blobs_[0].reset(new Blob<Dtype>(weight_shape));
    shared_ptr<Filler<Dtype> > weight_filler(GetFiller<Dtype>(p.weight_filler()));
    weight_filler->Fill(this->blobs_[0].get());
    if (bias_term_) {
      this->blobs_[1].reset(new Blob<Dtype>(bias_shape));
      shared_ptr<Filler<Dtype> > bias_filler(GetFiller<Dtype>(p.bias_filler()));
      bias_filler->Fill(this->blobs_[1].get());
    }
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void LocallyConnectedLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  CHECK_EQ(bottom[0]->num_axes(), 4) << "LocallyConnected takes N x C x H x W input";
  CHECK(bottom[0]->channels() == channels_ && bottom[0]->height() == height_ &&
        bottom[0]->width() == width_)
      << "LocallyConnected input changed from " << channels_ << "x" << height_
      << "x" << width_ << " to " << bottom[0]->shape_string()
      << ": its weights are per location, so the input size is fixed at setup";
  num_ = bottom[0]->num();
  top[0]->Reshape(num_, num_output_, height_out_, width_out_);
  vector<int> shape(3);
  shape[0] = locations_;
  shape[1] = patch_size_;
  shape[2] = num_;
  col_buffer_.Reshape(shape);
  shape[1] = num_output_;
  out_buffer_.Reshape(shape);
  if (bias_term_) {
    vector<int> multiplier_shape(1, num_);
    bias_multiplier_.Reshape(multiplier_shape);
    caffe_set(num_, Dtype(1), bias_multiplier_.mutable_cpu_data());
  }
}

template <typename Dtype>
void LocallyConnectedLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const int M = num_output_, K = patch_size_, N = num_;
  const Dtype* weight = this->blobs_[0]->cpu_data();
  Dtype* col = col_buffer_.mutable_cpu_data();
  Dtype* out = out_buffer_.mutable_cpu_data();
  lc_im2col_cpu(bottom[0]->cpu_data(), N, channels_, height_, width_, kernel_h_,
      kernel_w_, stride_h_, stride_w_, pad_h_, pad_w_, height_out_, width_out_, col);
  for (int l = 0; l < locations_; ++l) {
    const Dtype* w = weight + static_cast<size_t>(l) * M * K;
    const Dtype* c = col + static_cast<size_t>(l) * K * N;
    Dtype* o = out + static_cast<size_t>(l) * M * N;
    if (N <= gemv_max_batch()) {   // one GEMV per image (fast_cpu.hpp: oneMKL)
      for (int n = 0; n < N; ++n) { lc_gemv_strided(M, K, w, c + n, N, o + n, N); }
    } else {
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, M, N, K, Dtype(1), w, c,
          Dtype(0), o);
    }
  }
  Dtype* top_data = top[0]->mutable_cpu_data();
  lc_transpose_cpu(N, M, locations_, true, out, top_data);
  if (bias_term_) {
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, N, M * locations_, 1, Dtype(1),
        bias_multiplier_.cpu_data(), this->blobs_[1]->cpu_data(), Dtype(1), top_data);
  }
}

template <typename Dtype>
void LocallyConnectedLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int M = num_output_, K = patch_size_, N = num_;
  const bool weight_down = this->param_propagate_down_[0];
  const bool bias_down = bias_term_ && this->param_propagate_down_[1];
  if (!weight_down && !bias_down && !propagate_down[0]) return;
  const Dtype* top_diff = top[0]->cpu_diff();
  if (bias_down) {
    caffe_cpu_gemv<Dtype>(CblasTrans, N, M * locations_, Dtype(1), top_diff,
        bias_multiplier_.cpu_data(), Dtype(1), this->blobs_[1]->mutable_cpu_diff());
  }
  if (!weight_down && !propagate_down[0]) return;
  Dtype* out_diff = out_buffer_.mutable_cpu_diff();
  lc_transpose_cpu(N, M, locations_, false, out_diff, const_cast<Dtype*>(top_diff));
  if (weight_down) {
    // Recompute the patches: another layer may have reused the buffer since Forward.
    Dtype* col = col_buffer_.mutable_cpu_data();
    lc_im2col_cpu(bottom[0]->cpu_data(), N, channels_, height_, width_, kernel_h_,
        kernel_w_, stride_h_, stride_w_, pad_h_, pad_w_, height_out_, width_out_, col);
    Dtype* weight_diff = this->blobs_[0]->mutable_cpu_diff();
    for (int l = 0; l < locations_; ++l) {
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, M, K, N, Dtype(1),
          out_diff + static_cast<size_t>(l) * M * N, col + static_cast<size_t>(l) * K * N,
          Dtype(1), weight_diff + static_cast<size_t>(l) * M * K);
    }
  }
  if (propagate_down[0]) {
    const Dtype* weight = this->blobs_[0]->cpu_data();
    Dtype* col_diff = col_buffer_.mutable_cpu_diff();
    for (int l = 0; l < locations_; ++l) {
      caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, K, N, M, Dtype(1),
          weight + static_cast<size_t>(l) * M * K, out_diff + static_cast<size_t>(l) * M * N,
          Dtype(0), col_diff + static_cast<size_t>(l) * K * N);
    }
    lc_col2im_cpu(col_diff, N, channels_, height_, width_, kernel_h_, kernel_w_,
        stride_h_, stride_w_, pad_h_, pad_w_, height_out_, width_out_,
        bottom[0]->mutable_cpu_diff());
  }
}

#ifdef CPU_ONLY
STUB_GPU(LocallyConnectedLayer);
#endif

INSTANTIATE_CLASS(LocallyConnectedLayer);
REGISTER_LAYER_CLASS(LocallyConnected);

}  // namespace caffe
