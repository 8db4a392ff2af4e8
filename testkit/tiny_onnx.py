"""Tiny ONNX stand-ins for insightface model packs, built at test time with ``onnx.helper``.

They have the real models' input/output signatures, so the backend's loading, SCRFD decoding and
ArcFace alignment run for real, while what they detect is controllable:

* detector: per stride a Conv(kernel s, stride s) whose patch at (row, col) covers the pixels
  [col·s, col·s + s) × [row·s, row·s + s), i.e. starts at the anchor centre. Only stride 32 can
  fire: score = sigmoid(40·mean(green) − 20) on the normalised input, so a patch fires when more
  than ~75 % of it is green (white squares included). Box distances grow with the patch's red:
  red → box 2.5 s wide, no red → 1.5 s wide, both centred on the patch. Keypoints are the ArcFace
  template scaled into the patch, emitted eyes and mouth corners right-first so the backend has to
  order them.
* recognizer: AveragePool 8×8 → Flatten → MatMul(588×512, seeded) → (n, 512).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2
OPSET = 17
IR_VERSION = 8
RECOGNIZER_SEED = 1234
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# Keypoint offsets from the anchor centre in stride units: the template squeezed into one patch,
# emitted right eye, left eye, nose, right mouth corner, left mouth corner.
KPS_OFFSETS = (ARCFACE_TEMPLATE / 112.0)[[1, 0, 2, 4, 3]]

REAL_NAMES = {
    "buffalo_l": {"detector": "det_10g.onnx", "recognizer": "w600k_r50.onnx", "extra": "genderage.onnx"},
    "antelopev2": {
        "detector": "scrfd_10g_bnkps.onnx",
        "recognizer": "glintr100.onnx",
        "extra": "genderage.onnx",
    },
}
# Deliberately misleading: the extra model wears the detector's name.
SHUFFLED_NAMES = {"detector": "w600k_r50.onnx", "recognizer": "det_10g.onnx", "extra": "scrfd_10g_bnkps.onnx"}


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="closeup-tests"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _head_weights(head: str, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (2k, 3, s, s) and bias (2k,) for one head at one stride; channel = anchor·k + j."""
    k = {"score": 1, "bbox": 4, "kps": 10}[head]
    weight = np.zeros((ANCHORS * k, 3, stride, stride), dtype=np.float32)
    bias = np.zeros(ANCHORS * k, dtype=np.float32)
    mean = 1.0 / (stride * stride)  # weight that turns a channel sum into its mean
    for a in range(ANCHORS):
        rows = slice(a * k, (a + 1) * k)
        if head == "score":
            if stride == 32:
                weight[rows, 1] = 40.0 * mean
                bias[rows] = -20.0
            else:
                bias[rows] = -30.0
        elif head == "bbox":
            weight[rows, 0] = 0.25 * mean
            bias[rows] = [0.5, 0.5, 1.5, 1.5]
        else:
            bias[rows] = KPS_OFFSETS.reshape(-1)
    return weight, bias


def make_detector(
    path: Path, *, with_kps: bool = True, fixed_size: int | None = None, batched: bool = True
) -> Path:
    """SCRFD-like detector: input (1, 3, h, w), outputs scores/bbox[/kps] per stride 8, 16, 32."""
    h, w = (fixed_size, fixed_size) if fixed_size else ("h", "w")
    heads = ["score", "bbox", "kps"] if with_kps else ["score", "bbox"]
    nodes, inits, outputs = [], [], []
    for head in heads:
        k = {"score": 1, "bbox": 4, "kps": 10}[head]
        for s in STRIDES:
            weight, bias = _head_weights(head, s)
            tag = f"{head}_{s}"
            inits += [numpy_helper.from_array(weight, f"{tag}_w"), numpy_helper.from_array(bias, f"{tag}_b")]
            inits.append(
                numpy_helper.from_array(
                    np.array([1, -1, k] if batched else [-1, k], np.int64), f"{tag}_shape"
                )
            )
            nodes.append(
                helper.make_node(
                    "Conv",
                    ["input.1", f"{tag}_w", f"{tag}_b"],
                    [f"{tag}_conv"],
                    kernel_shape=[s, s],
                    strides=[s, s],
                )
            )
            nodes.append(helper.make_node("Transpose", [f"{tag}_conv"], [f"{tag}_nhwc"], perm=[0, 2, 3, 1]))
            reshaped = f"{tag}_logit" if head == "score" else tag
            nodes.append(helper.make_node("Reshape", [f"{tag}_nhwc", f"{tag}_shape"], [reshaped]))
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [reshaped], [tag]))
            dims = [1, f"n{s}", k] if batched else [f"n{s}", k]
            outputs.append(helper.make_tensor_value_info(tag, TensorProto.FLOAT, dims))
    graph = helper.make_graph(
        nodes,
        "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, h, w])],
        outputs,
        initializer=inits,
    )
    return _save(graph, path)


def recognizer_weights(seed: int = RECOGNIZER_SEED) -> np.ndarray:
    """The (588, 512) matrix make_recognizer bakes in, for tests that recompute an embedding."""
    return (np.random.default_rng(seed).standard_normal((588, 512)) * 0.05).astype(np.float32)


def make_recognizer(path: Path, *, seed: int = RECOGNIZER_SEED) -> Path:
    """ArcFace-like recognizer: input (n, 3, 112, 112) → output (n, 512)."""
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "fc_w"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["n", 512])],
        initializer=[numpy_helper.from_array(recognizer_weights(seed), "fc_w")],
    )
    return _save(graph, path)


def make_extra(path: Path, *, size: int = 96, width: int = 3) -> Path:
    """A model the backend must ignore (genderage-like: (1, 3, 96, 96) → (1, 3))."""
    weight = np.eye(3, width, dtype=np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "fc_w"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_extra",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, width])],
        initializer=[numpy_helper.from_array(weight, "fc_w")],
    )
    return _save(graph, path)


def make_pack(
    folder: Path,
    *,
    with_detector: bool = True,
    with_recognizer: bool = True,
    pack: str = "buffalo_l",
    shuffled_names: bool = False,
    detector_kps: bool = True,
    fixed_det_size: int | None = None,
    batched: bool = True,
) -> Path:
    """A model pack folder of tiny models named like ``pack``'s real files (or misleadingly)."""
    names = SHUFFLED_NAMES if shuffled_names else REAL_NAMES[pack]
    folder.mkdir(parents=True, exist_ok=True)
    if with_detector:
        make_detector(
            folder / names["detector"], with_kps=detector_kps, fixed_size=fixed_det_size, batched=batched
        )
    if with_recognizer:
        make_recognizer(folder / names["recognizer"])
    make_extra(folder / names["extra"])
    make_extra(folder / "2d106det.onnx", size=192, width=212)
    return folder


def square_face_png() -> bytes:
    """An 800×600 PNG with a 200-px white square: the one "face" the tiny detector finds."""
    import io

    from PIL import Image

    pixels = np.zeros((600, 800, 3), np.uint8)
    pixels[200:400, 300:500] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()
