#ifndef CAFFE_TEST_CONV_TEST_PARAM_HPP_
#define CAFFE_TEST_CONV_TEST_PARAM_HPP_

// A Convolution layer's parameters for the fast-path gtests (test_fast_cpu_paths.cpp,
// test_direct_conv.cpp): square kernel, stride, padding and dilation, gaussian weights
// and bias (std 0.5).
#include "caffe/proto/caffe.pb.h"

namespace caffe {

inline LayerParameter ConvTestParam(int out, int k, int s, int p, int d, bool bias) {
  LayerParameter param;
  param.set_type("Convolution");
  ConvolutionParameter* cp = param.mutable_convolution_param();
  cp->set_num_output(out);
  cp->add_kernel_size(k);
  cp->add_stride(s);
  cp->add_pad(p);
  cp->add_dilation(d);
  cp->set_bias_term(bias);
  cp->mutable_weight_filler()->set_type("gaussian");
  cp->mutable_weight_filler()->set_std(0.5);
  cp->mutable_bias_filler()->set_type("gaussian");
  cp->mutable_bias_filler()->set_std(0.5);
  return param;
}

}  // namespace caffe

#endif  // CAFFE_TEST_CONV_TEST_PARAM_HPP_
