#ifndef CAFFE_MULTILABEL_DATA_LAYER_HPP_
#define CAFFE_MULTILABEL_DATA_LAYER_HPP_

#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/base_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/db.hpp"

namespace caffe {

/**
 * @brief Reads images with a vector of labels each from an LMDB, with prefetching.
 *
 * Every record is a Datum whose `data` holds a uint8 image of
 * channels x height x width and whose `float_data` holds the label vector.
 * Tops: data, @f$ N \times C \times H \times W @f$ (uint8 value times `scale`), and
 * optionally label, @f$ N \times L @f$. L is `label_dim`, or the first record's
 * label count when `label_dim` is 0; a record with another label count or image size
 * stops the layer with an error naming its key. Reading wraps around at the end of
 * the database. There is no mirroring or cropping here: augmentation happens when the
 * LMDB is written, since mirroring a face must also swap its left and right landmarks.
 */
template <typename Dtype>
class MultiLabelDataLayer : public BasePrefetchingDataLayer<Dtype> {
 public:
  explicit MultiLabelDataLayer(const LayerParameter& param);
  virtual ~MultiLabelDataLayer();
  virtual void DataLayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "MultiLabelData"; }
  virtual inline int ExactNumBottomBlobs() const { return 0; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }

 protected:
  void Next();
  bool Skip();
  /// Checks a record against the shapes fixed at setup; fails naming its key.
  void CheckRecord(const Datum& datum, const string& key) const;
  virtual void load_batch(Batch<Dtype>* batch);

  shared_ptr<db::DB> db_;
  shared_ptr<db::Cursor> cursor_;
  uint64_t offset_;
  int channels_, height_, width_;
  int label_dim_;
};

}  // namespace caffe

#endif  // CAFFE_MULTILABEL_DATA_LAYER_HPP_
