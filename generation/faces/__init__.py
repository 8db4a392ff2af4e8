"""Face analysis: detection, landmarks, head pose and identity embeddings behind one protocol."""

from generation.faces.types import Face, FaceAnalyzer, FaceModelMissingError, HeadPose

__all__ = ["Face", "FaceAnalyzer", "FaceModelMissingError", "HeadPose"]
