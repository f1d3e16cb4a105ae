"""TCDCN: multi-task facial landmark and face attribute detection on patched BVLC Caffe."""

__version__ = "0.1.0"
