#include <stdint.h>

#include <cstdio>
#include <string>
#include <vector>

#include "boost/scoped_ptr.hpp"
#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/multilabel_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/db.hpp"
#include "caffe/util/io.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

using boost::scoped_ptr;

// Record r of the test database: a 2x3x2 image with pixel i = (7r + i) mod 256 and the
// labels {r, r + 0.5, -r} (three labels, unless bad_record == r, which gets two).
template <typename TypeParam>
class MultiLabelDataLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  static constexpr int kRecords = 5, kC = 2, kH = 3, kW = 2, kLabels = 3;

  MultiLabelDataLayerTest()
      : blob_top_data_(new Blob<Dtype>()), blob_top_label_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    MakeTempDir(&source_);
    source_ += "/db";
    blob_top_vec_.push_back(blob_top_data_);
    blob_top_vec_.push_back(blob_top_label_);
  }
  virtual ~MultiLabelDataLayerTest() {
    delete blob_top_data_;
    delete blob_top_label_;
  }
  static uint8_t Pixel(int record, int i) { return (7 * record + i) % 256; }
  static float Label(int record, int j) {
    return j == 0 ? record : (j == 1 ? record + 0.5f : -record);
  }
  void Fill(int records, int bad_record = -1) {
    scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LMDB));
    db->Open(source_, db::NEW);
    scoped_ptr<db::Transaction> txn(db->NewTransaction());
    for (int r = 0; r < records; ++r) {
      Datum datum;
      datum.set_channels(kC);
      datum.set_height(kH);
      datum.set_width(kW);
      for (int i = 0; i < kC * kH * kW; ++i) {
        datum.mutable_data()->push_back(static_cast<char>(Pixel(r, i)));
      }
      const int labels = r == bad_record ? kLabels - 1 : kLabels;
      for (int j = 0; j < labels; ++j) datum.add_float_data(Label(r, j));
      char key[16];
      snprintf(key, sizeof(key), "%08d", r);
      string value;
      CHECK(datum.SerializeToString(&value));
      txn->Put(key, value);
    }
    txn->Commit();
    db->Close();
  }
  LayerParameter MakeParam(int batch_size, float scale = 1, int label_dim = 0) {
    LayerParameter param;
    param.set_phase(TRAIN);
    MultiLabelDataParameter* p = param.mutable_multilabel_data_param();
    p->set_source(source_);
    p->set_batch_size(batch_size);
    p->set_scale(scale);
    p->set_label_dim(label_dim);
    return param;
  }

  string source_;
  Blob<Dtype>* const blob_top_data_;
  Blob<Dtype>* const blob_top_label_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(MultiLabelDataLayerTest, TestDtypesAndDevices);

TYPED_TEST(MultiLabelDataLayerTest, TestSetUpShapes) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(this->kRecords);
  MultiLabelDataLayer<Dtype> layer(this->MakeParam(4));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_data_->num(), 4);
  EXPECT_EQ(this->blob_top_data_->channels(), this->kC);
  EXPECT_EQ(this->blob_top_data_->height(), this->kH);
  EXPECT_EQ(this->blob_top_data_->width(), this->kW);
  ASSERT_EQ(this->blob_top_label_->num_axes(), 2);
  EXPECT_EQ(this->blob_top_label_->shape(0), 4);
  EXPECT_EQ(this->blob_top_label_->shape(1), this->kLabels);
}

// Values and order, across the end of the database: with 5 records and batches of 2,
// four batches read records 0 1 | 2 3 | 4 0 | 1 2.
TYPED_TEST(MultiLabelDataLayerTest, TestReadOrderAndWrapAround) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(this->kRecords);
  const Dtype scale = 0.5;
  MultiLabelDataLayer<Dtype> layer(this->MakeParam(2, scale));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const int image = this->kC * this->kH * this->kW;
  int expected_record = 0;
  for (int batch = 0; batch < 4; ++batch) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    for (int item = 0; item < 2; ++item) {
      const int r = expected_record++ % this->kRecords;
      for (int i = 0; i < image; ++i) {
        ASSERT_EQ(this->blob_top_data_->cpu_data()[item * image + i],
                  scale * this->Pixel(r, i)) << "batch " << batch << " item " << item;
      }
      for (int j = 0; j < this->kLabels; ++j) {
        ASSERT_EQ(this->blob_top_label_->cpu_data()[item * this->kLabels + j],
                  static_cast<Dtype>(this->Label(r, j)))
            << "batch " << batch << " item " << item << " label " << j;
      }
    }
  }
}

TYPED_TEST(MultiLabelDataLayerTest, TestDataOnly) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(this->kRecords);
  this->blob_top_vec_.resize(1);
  MultiLabelDataLayer<Dtype> layer(this->MakeParam(3));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_data_->cpu_data()[1], this->Pixel(0, 1));
  EXPECT_EQ(this->blob_top_data_->cpu_data()[12], this->Pixel(1, 0));
}

TYPED_TEST(MultiLabelDataLayerTest, TestLabelDimMismatchAtSetUpDies) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(this->kRecords);
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH({
    MultiLabelDataLayer<Dtype> layer(this->MakeParam(2, 1, this->kLabels + 1));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  }, "record 00000000 has 3 labels \\(Datum.float_data\\), expected 4");
}

TYPED_TEST(MultiLabelDataLayerTest, TestBadRecordWhileReadingDies) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(this->kRecords, 3);
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH({
    MultiLabelDataLayer<Dtype> layer(this->MakeParam(2));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    for (int i = 0; i < 4; ++i) layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  }, "record 00000003 has 2 labels");
}

TYPED_TEST(MultiLabelDataLayerTest, TestEmptyDatabaseDies) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(0);
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH({
    MultiLabelDataLayer<Dtype> layer(this->MakeParam(2));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  }, "holds no records");
}

}  // namespace caffe
