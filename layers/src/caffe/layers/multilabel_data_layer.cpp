#include <stdint.h>

#include <string>
#include <vector>

#include "caffe/layers/multilabel_data_layer.hpp"
#include "caffe/util/benchmark.hpp"

namespace caffe {

template <typename Dtype>
MultiLabelDataLayer<Dtype>::MultiLabelDataLayer(const LayerParameter& param)
  : BasePrefetchingDataLayer<Dtype>(param), offset_(),
    channels_(), height_(), width_(), label_dim_() {
  const MultiLabelDataParameter& p = param.multilabel_data_param();
  CHECK(p.has_source()) << "MultiLabelData " << param.name() << ": no source given";
  db_.reset(db::GetDB(DataParameter_DB_LMDB));
  db_->Open(p.source(), db::READ);
  cursor_.reset(db_->NewCursor());
}

template <typename Dtype>
MultiLabelDataLayer<Dtype>::~MultiLabelDataLayer() {
  this->StopInternalThread();
}

template <typename Dtype>
void MultiLabelDataLayer<Dtype>::CheckRecord(const Datum& datum,
    const string& key) const {
  const string& source = this->layer_param_.multilabel_data_param().source();
  CHECK(datum.channels() == channels_ && datum.height() == height_ &&
        datum.width() == width_)
      << source << ": record " << key << " is " << datum.channels() << "x"
      << datum.height() << "x" << datum.width() << ", expected " << channels_
      << "x" << height_ << "x" << width_;
  CHECK_EQ(datum.data().size(), channels_ * height_ * width_)
      << source << ": record " << key << " holds " << datum.data().size()
      << " image bytes (Datum.data), expected " << channels_ * height_ * width_;
  CHECK_EQ(datum.float_data_size(), label_dim_)
      << source << ": record " << key << " has " << datum.float_data_size()
      << " labels (Datum.float_data), expected " << label_dim_;
}

template <typename Dtype>
void MultiLabelDataLayer<Dtype>::DataLayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const MultiLabelDataParameter& p = this->layer_param_.multilabel_data_param();
  const int batch_size = p.batch_size();
  CHECK_GT(batch_size, 0) << "MultiLabelData: batch_size must be positive";
  CHECK(cursor_->valid()) << "MultiLabelData: " << p.source() << " holds no records";
  Datum datum;
  CHECK(datum.ParseFromString(cursor_->value()))
      << p.source() << ": record " << cursor_->key() << " is not a Datum";
  channels_ = datum.channels();
  height_ = datum.height();
  width_ = datum.width();
  label_dim_ = p.label_dim() > 0 ? p.label_dim() : datum.float_data_size();
  CheckRecord(datum, cursor_->key());

  top[0]->Reshape(batch_size, channels_, height_, width_);
  for (int i = 0; i < this->prefetch_.size(); ++i) {
    this->prefetch_[i]->data_.Reshape(batch_size, channels_, height_, width_);
  }
  LOG_IF(INFO, Caffe::root_solver()) << "output data size: " << top[0]->shape_string();
  if (this->output_labels_) {
    vector<int> label_shape(2);
    label_shape[0] = batch_size;
    label_shape[1] = label_dim_;
    top[1]->Reshape(label_shape);
    for (int i = 0; i < this->prefetch_.size(); ++i) {
      this->prefetch_[i]->label_.Reshape(label_shape);
    }
    LOG_IF(INFO, Caffe::root_solver()) << "output label size: " << top[1]->shape_string();
  }
}

template <typename Dtype>
bool MultiLabelDataLayer<Dtype>::Skip() {
  // With several solvers each takes every solver_count-th record, as DataLayer does.
  const int size = Caffe::solver_count();
  const int rank = Caffe::solver_rank();
  const bool keep = (offset_ % size) == rank || this->layer_param_.phase() == TEST;
  return !keep;
}

template <typename Dtype>
void MultiLabelDataLayer<Dtype>::Next() {
  cursor_->Next();
  if (!cursor_->valid()) {
    LOG_IF(INFO, Caffe::root_solver()) << "Restarting data prefetching from start.";
    cursor_->SeekToFirst();
  }
  offset_++;
}

// Runs on the prefetch thread.
template <typename Dtype>
void MultiLabelDataLayer<Dtype>::load_batch(Batch<Dtype>* batch) {
  CPUTimer timer;
  timer.Start();
  const MultiLabelDataParameter& p = this->layer_param_.multilabel_data_param();
  const int batch_size = p.batch_size();
  const Dtype scale = p.scale();
  const int image_size = channels_ * height_ * width_;
  Dtype* data = batch->data_.mutable_cpu_data();
  Dtype* label = this->output_labels_ ? batch->label_.mutable_cpu_data() : NULL;
  Datum datum;
  for (int item = 0; item < batch_size; ++item) {
    while (Skip()) {
      Next();
    }
    CHECK(datum.ParseFromString(cursor_->value()))
        << p.source() << ": record " << cursor_->key() << " is not a Datum";
    CheckRecord(datum, cursor_->key());
    const uint8_t* pixels = reinterpret_cast<const uint8_t*>(datum.data().data());
    Dtype* dst = data + item * image_size;
    for (int i = 0; i < image_size; ++i) {
      dst[i] = static_cast<Dtype>(pixels[i]) * scale;
    }
    if (label) {
      for (int j = 0; j < label_dim_; ++j) {
        label[item * label_dim_ + j] = static_cast<Dtype>(datum.float_data(j));
      }
    }
    Next();
  }
  timer.Stop();
  DLOG(INFO) << "Prefetch batch: " << timer.MilliSeconds() << " ms.";
}

INSTANTIATE_CLASS(MultiLabelDataLayer);
REGISTER_LAYER_CLASS(MultiLabelData);

}  // namespace caffe
