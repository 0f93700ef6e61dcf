"""Several tiles in one interpreter invoke give exactly what one invoke per tile gives.

The detector runs the regions of a frame a few per invoke (``device.pipeline.MAX_BATCH``)
by resizing the model's batch dimension; the models' output heads then lay the inputs out
head by head (``device.detector.blazeface.unstack``). These tests hold the batched path to
bit-identical outputs and detections on the real models and the real classroom clip.
"""

from pathlib import Path

import numpy as np
import pytest

from conftest import CLASSROOM
from device.config import Settings
from device.detector import FaceDetector, letterboxed_input
from device.detector.anchors import FULL_RANGE, SHORT_RANGE, feature_maps, generate_anchors
from device.detector.blazeface import VARIANTS, BlazeFace, unstack
from device.models import resolve
from device.pipeline import MAX_BATCH, build_analyzer
from device.runtime import TFLiteModel
from device.sources.files import read_file

MODELS = ["blazeface_full_range_float", "blazeface_full_range_int8",
          "blazeface_short_range_float", "blazeface_short_range_int8"]


def load(name: str, max_batch: int) -> BlazeFace:
    path, entry = resolve(name)
    return BlazeFace(TFLiteModel(path, num_threads=1), VARIANTS[entry.variant], max_batch=max_batch)


@pytest.fixture(scope="module")
def frames():
    return [f.rgb for f in read_file(CLASSROOM)][::9]


def test_feature_maps_match_the_anchor_counts():
    assert feature_maps(SHORT_RANGE) == [(16, 2), (8, 6)]
    assert feature_maps(FULL_RANGE) == [(48, 1)]
    for spec in (SHORT_RANGE, FULL_RANGE):
        assert sum(side * side * per for side, per in feature_maps(spec)) == len(generate_anchors(spec))


def test_unstack_puts_each_inputs_heads_together():
    # Two inputs, heads of 3 and 2 anchors, one value each: the interpreter's layout is
    # [head 0: input 0, input 1][head 1: input 0, input 1].
    output = np.array([[[0], [1], [2], [10], [11], [12], [3], [4], [13], [14]]])
    assert unstack(output, 2, [3, 2])[..., 0].tolist() == [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]]


@pytest.mark.parametrize("name", MODELS)
def test_batched_outputs_equal_one_invoke_per_input(name, frames):
    # 5 inputs with at most 3 per invoke: two invokes of 3, the second padded.
    one, batched = load(name, 1), load(name, 3)
    detector = FaceDetector(one)
    size = one.input_size
    rgbs = np.stack([letterboxed_input(rgb, tile, size)[0]
                     for rgb in frames[:2] for tile in detector.regions(*rgb.shape[1::-1])][:5])
    regressors, logits = batched.raw_batch(rgbs)
    assert batched.model.batch == 3 and regressors.shape[0] == 5 and logits.shape[0] == 5
    for i, rgb in enumerate(rgbs):
        r, s = one.raw(rgb)
        assert np.array_equal(regressors[i], r) and np.array_equal(logits[i], s)


@pytest.mark.parametrize("name", MODELS)
def test_batched_detections_equal_unbatched(name, frames):
    analyzer = build_analyzer(Settings(_env_file=None, state_dir=Path("/nonexistent"), model=name, accelerator="cpu"))
    assert analyzer.detector.model.max_batch == MAX_BATCH > 1
    unbatched = FaceDetector(load(name, 1), analyzer.detector.tiling, analyzer.detector.min_score)
    for rgb in frames:
        got, want = analyzer.detector.detect(rgb), unbatched.detect(rgb)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert np.array_equal(a.box, b.box) and np.array_equal(a.keypoints, b.keypoints) and a.score == b.score
