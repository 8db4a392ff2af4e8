"""Which face the report is about when the detector returns several."""

import numpy as np

from generation.faces.types import Face, HeadPose
from generation.quality.gate import main_face_first


def _face(size: float, score: float) -> Face:
    points = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]) * size
    return Face(box=(0.0, 0.0, size, size), score=score, landmarks5=points, pose=HeadPose(0, 0, 0))


def test_largest_confident_face_comes_first() -> None:
    small, big = _face(100, 0.95), _face(200, 0.9)
    assert main_face_first([small, big]) == [big, small]


def test_big_doubtful_detection_does_not_displace_a_confident_face() -> None:
    person, pattern = _face(100, 0.95), _face(400, 0.55)
    assert main_face_first([pattern, person])[0] is person


def test_among_doubtful_detections_the_likeliest_comes_first() -> None:
    # Both under the confidence floor (e.g. a tilted head): the higher score wins over the larger box.
    real, false = _face(100, 0.69), _face(300, 0.54)
    assert main_face_first([false, real]) == [real, false]
