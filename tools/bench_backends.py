#!/usr/bin/env python3
"""Speed of each inference backend (numbers printed, never asserted): every shipped net at
batch 1 and batch 256, ms per input, in our Caffe, onnxruntime and OpenCV dnn (whichever
this environment has); and Detector() end to end per image against stock Haar detection in
the same process, with each backend, plus the faster options (flip off, no attributes).

  tools/bench_backends.py [--json benchmarks/bench_backends.json] [--merge OTHER.json]

Run it once here (OpenCV 4, our Caffe, onnxruntime) and once in an environment with
OpenCV 5 (PYTHONPATH=python /path/to/venv/bin/python tools/bench_backends.py --json X);
--merge adds the other run's rows to the JSON. Threads: OMP/MKL/OpenBLAS and OpenCV at
--threads (default 1), onnxruntime's intra-op pool likewise. Medians of --repeats runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--faces", type=int, default=100, help="AFLW images end to end")
    p.add_argument("--json", type=Path)
    p.add_argument("--merge", type=Path, nargs="*", default=[])
    args = p.parse_args(argv)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import numpy as np
    from tcdcn import models as m
    from tcdcn.api import Detector
    from tcdcn.paths import data_root, write_json
    from tcdcn.timing import paired_rounds, timed
    cv2.setNumThreads(args.threads)
    try:
        import onnxruntime
        onnxruntime.set_default_logger_severity(3)
    except ImportError:
        pass
    backends = [b for b in ("caffe", "onnx", "opencv")
                if (b != "caffe" or m.default_backend() == "caffe")
                and (b != "onnx" or m.has_onnxruntime())]
    opencv = f"opencv {cv2.__version__}"
    label = {"caffe": "our Caffe", "onnx": "onnxruntime", "opencv": opencv}
    def landmark_input(folder: str) -> tuple[int, int, int]:   # model.json's input size
        size = int(m.read_model_json(m.bundled(folder))["input"]["size"])
        return (1, size, size)

    nets = [("tcdcn_5pt", "tcdcn_5pt", landmark_input("tcdcn_5pt")),
            ("tcdcn_68pt", "tcdcn_68pt", landmark_input("tcdcn_68pt")),
            ("snet", "snet", (1, 96, 96)), ("mtcnn", "det1", (3, 48, 48)),
            ("mtcnn", "det2", (3, 24, 24)), ("mtcnn", "det3", (3, 48, 48))]
    rows = []
    rng = np.random.default_rng(0)
    for folder, stem, shape in nets:
        for backend in backends:
            if backend == "caffe" and stem.startswith("tcdcn"):
                net = m.CaffeNet(m.bundled(folder) / "deploy.prototxt",
                                 m.bundled(folder) / f"{stem}.caffemodel")
            elif stem.startswith("tcdcn") and backend == "opencv" and m.has_caffe_importer():
                net = cv2.dnn.readNetFromCaffe(str(m.bundled(folder) / "deploy_opencv.prototxt"),
                                               str(m.bundled(folder) / "deploy_opencv.caffemodel"))
            else:
                net = m.load_net(m.bundled(folder), stem, backend)
            if hasattr(net, "session"):   # onnxruntime: the thread count asked for
                import onnxruntime as ort
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = args.threads
                opts.log_severity_level = 3
                net.session = ort.InferenceSession(net.session._model_path, opts,
                                                   providers=["CPUExecutionProvider"])
            row = {"net": f"{folder}/{stem}", "backend": label[backend]}
            for batch in (1, 256):
                x = rng.uniform(0, 1, (batch,) + shape).astype(np.float32)
                if stem.startswith("tcdcn"):
                    x *= 255

                def run(x=x):
                    net.setInput(x)
                    net.forward(net.getUnconnectedOutLayersNames()
                                if hasattr(net, "getUnconnectedOutLayersNames") else
                                [o.name for o in net.session.get_outputs()]
                                if hasattr(net, "session") else list(net.net.outputs))
                row[f"batch{batch}_ms_per_input"] = round(
                    1e3 * timed(run, args.repeats if batch == 1 else 3) / batch, 4)
            rows.append(row)
            print(f"{row['net']:18s} {row['backend']:14s} batch 1 {row['batch1_ms_per_input']:8.3f} ms"
                  f"   batch 256 {row['batch256_ms_per_input']:7.3f} ms per input", flush=True)
    # end to end: paired rounds against stock Haar on the same images
    root = data_root()
    listing = root / "MTFL" / "testing.txt"
    from tcdcn.data.datasets import read_mtfl
    images = [cv2.imread(str(s.image)) for s in read_mtfl(listing, root / "MTFL")[:args.faces]]
    greys = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in images]
    # stock Haar detection as the baseline where this OpenCV has it (OpenCV 5 removed it)
    haar = (cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            if hasattr(cv2, "CascadeClassifier") else None)
    end_to_end = []
    variants = [(b, {}) for b in backends] + [(backends[-1], {"flip": False}),
                                              (backends[-1], {"attributes": False}),
                                              (backends[-1], {"flip": False, "attributes": False})]
    for backend, options in variants:
        det = Detector(backend=backend, **options)
        rounds = [(h / len(images), e / len(images)) for h, e in paired_rounds(
            lambda: [haar.detectMultiScale(g) for g in greys] if haar is not None else None,
            lambda: [det(im) for im in images], 3)]
        e2e = statistics.median(e for _, e in rounds) * 1e3
        hr = statistics.median(h for h, _ in rounds) * 1e3 if haar is not None else None
        row = {"backend": label[backend], "options": options, "ms_per_image": round(e2e, 3),
               "stock_haar_ms_per_image": round(hr, 3) if hr else None,
               "ratio_to_haar": round(statistics.median(e / h for h, e in rounds), 3)
               if hr else None,
               "images": f"the first {len(images)} AFLW images (150x150)"}
        end_to_end.append(row)
        print(f"end to end, {row['backend']} {options or ''}: {e2e:.2f} ms per image"
              + (f", stock Haar {hr:.2f} ms: ratio {row['ratio_to_haar']}" if hr else
                 " (no stock Haar in this OpenCV)"), flush=True)
    report = {"tool": "tools/bench_backends.py", "argv": argv if argv is not None else sys.argv[1:],
              "threads": args.threads, "cpu_count": os.cpu_count(), "opencv": cv2.__version__,
              "nets": rows, "end_to_end": end_to_end}
    for other in args.merge:
        extra = json.loads(other.read_text())
        report["nets"] += [r for r in extra["nets"] if r["backend"] not in label.values()]
        report["end_to_end"] += [r for r in extra["end_to_end"] if r["backend"] not in label.values()]
        report.setdefault("merged", []).append({"file": str(other), "opencv": extra["opencv"]})
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
