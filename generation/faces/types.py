"""What every face backend returns, and the protocol a backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class HeadPose:
    """Degrees. yaw > 0: nose towards image right; pitch > 0: head tilted down; roll > 0: clockwise."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the pixel coordinates of the image the analyzer was given.

    ``landmarks5`` rows, in image terms: left eye centre, right eye centre, nose tip, left mouth
    corner, right mouth corner ("left" = smaller x), the order insightface and InstantID use.
    ``landmarks68`` (iBUG 300-W order) is present when the backend can place them; the eyes-closed
    check needs them.
    """

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # detector confidence, roughly 0..1 (dlib's SVM margin is squashed into it)
    landmarks5: np.ndarray  # (5, 2) float
    pose: HeadPose
    landmarks68: np.ndarray | None = None  # (68, 2) float
    embedding: np.ndarray | None = None  # identity vector, model given by embedding_model
    embedding_model: str | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def eye_left(self) -> np.ndarray:
        return self.landmarks5[0]

    @property
    def eye_right(self) -> np.ndarray:
        return self.landmarks5[1]

    @property
    def eye_mid(self) -> np.ndarray:
        return (self.landmarks5[0] + self.landmarks5[1]) / 2.0

    @property
    def inter_eye_distance(self) -> float:
        """Measured distance between eye centres, in pixels (not corrected for yaw)."""
        return float(np.linalg.norm(self.landmarks5[1] - self.landmarks5[0]))

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor`` (pose and embedding unchanged)."""
        return Face(
            box=tuple(v * factor for v in self.box),  # type: ignore[arg-type]
            score=self.score,
            landmarks5=self.landmarks5 * factor,
            pose=self.pose,
            landmarks68=None if self.landmarks68 is None else self.landmarks68 * factor,
            embedding=self.embedding,
            embedding_model=self.embedding_model,
        )


@runtime_checkable
class FaceAnalyzer(Protocol):
    """Finds faces in an RGB uint8 image. Implementations load their models once and are reused."""

    name: str

    def analyze(self, rgb: np.ndarray, *, embeddings: bool = False) -> list[Face]:
        """Faces sorted largest first. ``embeddings`` asks for identity vectors (slower)."""
        ...


class FaceModelMissingError(RuntimeError):
    """A backend's model files are absent and could not be fetched; the message says where to put them."""
