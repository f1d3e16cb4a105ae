"""TCDCN: multi-task facial landmark and face attribute detection on patched BVLC Caffe.

    from tcdcn.api import Detector
    faces = Detector()("photo.jpg")
"""

__version__ = "0.3.0"
