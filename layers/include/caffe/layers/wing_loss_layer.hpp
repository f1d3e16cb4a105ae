#ifndef CAFFE_WING_LOSS_LAYER_HPP_
#define CAFFE_WING_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/loss_layer.hpp"

namespace caffe {

/**
 * @brief The Wing loss for landmark regression (Feng, Kittler, Awais, Huber, Wu:
 *        "Wing Loss for Robust Facial Landmark Localisation with Convolutional Neural
 *        Networks", CVPR 2018).
 *
 * With @f$ x = \hat{y} - y @f$ per coordinate,
 * @f[
 *   \mathrm{wing}(x) = \left\{ \begin{array}{ll}
 *     w \ln(1 + |x| / \epsilon) & \mathrm{if}\ |x| < w \\
 *     |x| - C                   & \mathrm{otherwise}
 *   \end{array} \right., \qquad C = w - w \ln(1 + w / \epsilon),
 * @f]
 * and @f$ E = \frac{1}{N} \sum_{n, i} \mathrm{wing}(x_{n,i}) @f$ (summed over the
 * coordinates of a sample, averaged over the batch, as EuclideanLoss normalises).
 * Small and medium errors get a larger gradient than under L2 (@f$ w / (\epsilon + |x|)
 * @f$ instead of @f$ x @f$), large ones the constant gradient of L1.
 *
 * Parameters (wing_loss_param): w and epsilon, in the units of the inputs; both > 0.
 *
 * @param bottom input Blob vector (length 2)
 *   -# @f$ (N \times C \times H \times W) @f$ the predictions @f$ \hat{y} @f$
 *   -# @f$ (N \times C \times H \times W) @f$ the targets @f$ y @f$
 * @param top output Blob vector (length 1)
 *   -# @f$ (1 \times 1 \times 1 \times 1) @f$ the loss @f$ E @f$
 *
 * Like EuclideanLoss it backpropagates to both inputs. The gradient at @f$ x = 0 @f$
 * (a kink) is taken as 0.
 */
template <typename Dtype>
class WingLossLayer : public LossLayer<Dtype> {
 public:
  explicit WingLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param), diff_(), values_() {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "WingLoss"; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return true;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  Dtype w_, epsilon_, c_;
  Blob<Dtype> diff_;    ///< prediction - target, kept for the backward pass
  Blob<Dtype> values_;  ///< per-coordinate loss (GPU forward)
};

}  // namespace caffe

#endif  // CAFFE_WING_LOSS_LAYER_HPP_
