"""The patched Caffe: its source (fetched, hash-checked, patched: caffe_source.py, run by
CMakeLists.txt and tools/setup.sh), the build setup.sh made (caffe_build.py) and the GPU
check's shared facts (device.py). Standard library only: these run before the environment
exists."""
