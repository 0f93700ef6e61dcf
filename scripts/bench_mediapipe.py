#!/usr/bin/env python3
"""MediaPipe's own face detector on a clip: the reference for ``scripts/bench.py``.

Runs in its own venv (``.venv-mediapipe``, made by ``make bench``: mediapipe 0.10.14 pins
numpy < 2 and protobuf 4, which clash with the runtime venv). Uses the legacy
``mediapipe.solutions.face_detection`` graph with ``model_selection=1`` (full range: the
same ``face_detection_full_range_sparse.tflite`` that models/ fetches), one pass over the
whole frame, no tiling. Decoding is not timed.

Prints one JSON object: ``frames``, ``process_s`` (total time in ``process()``),
``peak_rss_mb`` and ``detections`` (per frame, ``[x_min, y_min, x_max, y_max]`` in pixels
and the 6 keypoints in pixels).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import av
import mediapipe as mp
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip")
    parser.add_argument("--min-score", type=float, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with av.open(args.clip) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=args.min_score)
    detector.process(frames[0])  # graph start-up is not part of throughput
    results, elapsed = [], 0.0
    for rep in range(args.repeat):
        for rgb in frames:
            began = time.perf_counter()
            out = detector.process(rgb)
            elapsed += time.perf_counter() - began
            if rep:
                continue
            h, w = rgb.shape[:2]
            faces = []
            for det in out.detections or []:
                box = det.location_data.relative_bounding_box
                kps = [[k.x * w, k.y * h] for k in det.location_data.relative_keypoints]
                faces.append({"box": [box.xmin * w, box.ymin * h, (box.xmin + box.width) * w,
                                      (box.ymin + box.height) * h],
                              "keypoints": kps, "score": float(det.score[0])})
            results.append(faces)
    print(json.dumps({
        "frames": len(frames) * args.repeat,
        "process_s": elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "numpy": np.__version__,
        "mediapipe": mp.__version__,
        "detections": results,
    }))


if __name__ == "__main__":
    main()
