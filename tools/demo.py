#!/usr/bin/env python3
"""Find faces in a sample image, mark their five points and attributes, write PNG + JSON.

The default image is scikit-image's bundled astronaut photograph (skimage.data.astronaut,
public domain, NASA), so the demo needs no data download. --image takes your own.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", type=Path, help="an image of yours (default: skimage's astronaut)")
    p.add_argument("--model", type=Path, help="model folder (default: models/tcdcn_5pt)")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    args = p.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from tcdcn.api import Detector, draw
    from tcdcn.image import load_image
    from tcdcn.models import DEFAULT_MODEL
    if args.image:
        image, name = load_image(args.image), args.image.stem
    else:
        import skimage.data
        image, name = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), "astronaut"
    detector = Detector(args.model or DEFAULT_MODEL)
    faces = detector(image)
    args.out.mkdir(parents=True, exist_ok=True)
    png, js = args.out / f"{name}.png", args.out / f"{name}.json"
    cv2.imwrite(str(png), draw(image, faces))
    js.write_text(json.dumps({"image": str(args.image) if args.image else "skimage.data.astronaut",
                              "faces": [f.as_dict() for f in faces]}, indent=2) + "\n")
    for i, f in enumerate(faces):
        attrs = ", ".join(f"{k} {v[0]} ({v[1]:.2f})" for k, v in f.attributes.items())
        print(f"face {i}: box {[round(float(v)) for v in f.box]}; {attrs}")
    print(f"{len(faces)} face(s); wrote {png} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
