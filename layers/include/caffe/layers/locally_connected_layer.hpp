#ifndef CAFFE_LOCALLY_CONNECTED_LAYER_HPP_
#define CAFFE_LOCALLY_CONNECTED_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief A 2D convolution with untied weights: every output location has its own
 *        filter bank and its own bias (TCDCN's conv4).
 *
 * With input @f$ x @f$ of shape @f$ N \times C \times H \times W @f$, kernel
 * @f$ k_h \times k_w @f$, stride @f$ s_h, s_w @f$ and padding @f$ p_h, p_w @f$,
 * the output has @f$ H_o = (H + 2p_h - k_h) / s_h + 1 @f$ rows and
 * @f$ W_o = (W + 2p_w - k_w) / s_w + 1 @f$ columns, and at location
 * @f$ l = h_o W_o + w_o @f$
 * @f[
 *   y_{n,m,h_o,w_o} = b_{m,h_o,w_o} + \sum_{c,i,j}
 *       w_{l M + m,\,c,\,i,\,j}\; x_{n,\,c,\,h_o s_h - p_h + i,\,w_o s_w - p_w + j}
 * @f]
 * (x is zero outside the image).
 *
 * Blobs:
 *   - weights: @f$ (H_o W_o M) \times C \times k_h \times k_w @f$; rows
 *     @f$ l M \ldots l M + M - 1 @f$ are location l's filters, laid out exactly like
 *     Convolution's @f$ M \times C \times k_h \times k_w @f$ weights. (The first axis
 *     folds location and output so that fan-in based fillers see @f$ C k_h k_w @f$.)
 *   - bias (if bias_term): @f$ M \times H_o \times W_o @f$.
 *
 * The input's spatial size is fixed at setup: the number of weights depends on it.
 *
 * Computation: the input patches of all N images are gathered into a buffer laid out
 * location-major (@f$ L \times K \times N @f$ with @f$ K = C k_h k_w @f$), so each
 * location is one GEMM @f$ (M \times K)(K \times N) @f$ over the whole batch, or, for
 * batches of at most gemv_max_batch() images (fast_cpu.hpp: inference with oneMKL), one
 * GEMV per image and location.
 */
template <typename Dtype>
class LocallyConnectedLayer : public Layer<Dtype> {
 public:
  explicit LocallyConnectedLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "LocallyConnected"; }
  virtual inline int ExactNumBottomBlobs() const { return 1; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int num_;          // N
  int channels_;     // C
  int height_, width_;            // H, W
  int kernel_h_, kernel_w_;
  int stride_h_, stride_w_;
  int pad_h_, pad_w_;
  int height_out_, width_out_;    // H_o, W_o
  int num_output_;   // M
  int locations_;    // L = H_o * W_o
  int patch_size_;   // K = C * k_h * k_w
  bool bias_term_;
  /// Input patches, L x K x N (and their gradient in the diff).
  Blob<Dtype> col_buffer_;
  /// Output before the final transpose, L x M x N (and its gradient in the diff).
  Blob<Dtype> out_buffer_;
  /// N ones, for the bias.
  Blob<Dtype> bias_multiplier_;
};

}  // namespace caffe

#endif  // CAFFE_LOCALLY_CONNECTED_LAYER_HPP_
