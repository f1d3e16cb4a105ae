#ifndef CAFFE_REGRESSION_NLL_LOSS_LAYER_HPP_
#define CAFFE_REGRESSION_NLL_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/loss_layer.hpp"

namespace caffe {

/**
 * @brief The negative log-likelihood of regression targets under a per-coordinate
 *        Laplace or Gaussian distribution whose centre and log-scale the net predicts
 *        (heteroscedastic regression: Nix & Weigend 1994; Kendall & Gal, NIPS 2017).
 *
 * With @f$ d = y - \mu @f$ and the predicted log-scale @f$ s @f$ per coordinate,
 * @f[
 *   \ell_{\mathrm{Laplace}}  = |d| e^{-s} + s, \qquad
 *   \ell_{\mathrm{Gaussian}} = \tfrac{1}{2} d^2 e^{-2s} + s,
 * @f]
 * (the NLL without its constants, ln 2 and ln sqrt(2 pi)), and
 * @f$ E = \frac{1}{N} \sum_{n, i} \ell_{n,i} @f$ (summed over a sample's coordinates,
 * averaged over the batch, as EuclideanLoss and WingLoss normalise). The scale
 * @f$ e^{s} @f$ that minimises the expected loss is the mean absolute error (Laplace) or
 * the root mean squared error (Gaussian) of @f$ \mu @f$: the net learns how far off
 * each of its coordinates is likely to be.
 *
 * Parameters (regression_nll_param): distribution, LAPLACE (default) or GAUSSIAN.
 *
 * @param bottom input Blob vector (length 3)
 *   -# @f$ (N \times C \times H \times W) @f$ the predicted centres @f$ \mu @f$
 *   -# @f$ (N \times C \times H \times W) @f$ the predicted log-scales @f$ s @f$
 *   -# @f$ (N \times C \times H \times W) @f$ the targets @f$ y @f$
 * @param top output Blob vector (length 1)
 *   -# @f$ (1 \times 1 \times 1 \times 1) @f$ the loss @f$ E @f$
 *
 * Backpropagates to all three inputs (a frozen centre is a propagate_down: false, or a
 * zero learning rate upstream). The Laplace gradient at @f$ d = 0 @f$ (a kink) is
 * taken as 0 for the centre.
 */
template <typename Dtype>
class RegressionNLLLossLayer : public LossLayer<Dtype> {
 public:
  explicit RegressionNLLLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param), diff_(), scale_inv_(), values_(), ones_() {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "RegressionNLLLoss"; }
  virtual inline int ExactNumBottomBlobs() const { return 3; }
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

  bool gaussian_;
  Blob<Dtype> diff_;       ///< mu - y, kept for the backward pass
  Blob<Dtype> scale_inv_;  ///< exp(-s) (Laplace) or exp(-2s) (Gaussian)
  Blob<Dtype> values_;     ///< per-coordinate loss (GPU forward)
  Blob<Dtype> ones_;       ///< all ones: values_ . ones_ is the sum (GPU forward)
};

}  // namespace caffe

#endif  // CAFFE_REGRESSION_NLL_LOSS_LAYER_HPP_
