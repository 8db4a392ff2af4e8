"""Tiny ONNX stand-ins for OpenCV Zoo's YuNet and SFace, in the signatures cv2 reads them by.

OpenCV's own FaceDetectorYN and FaceRecognizerSF load and run them, so the backend's detection sizes,
coordinate mapping, keypoint order and embedding crop are tested through the real OpenCV code:

* detector (YuNet 2023mar's outputs cls_/obj_/bbox_/kps_ at strides 8, 16, 32, rows of cells in reading
  order): only stride 32 fires, on a cell whose 32×32 block is bright (score = sigmoid(0.2·(mean − 200))
  for both cls and obj), so a white 32-px square on black, placed on the grid, is one face. The box is
  centred on the cell and BOX_CELLS cells wide; keypoints are the ArcFace template squeezed into the cell,
  emitted right eye first as YuNet does.
* recognizer (SFace's input ``data`` 1×3×112×112, output ``fc1`` 1×128): 8×8 average pooling → Flatten →
  MatMul with a seeded matrix, on the raw 0-255 RGB blob OpenCV makes (``recognizer_matrix`` rebuilds it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
OPSET = 17
IR_VERSION = 8
BOX_CELLS = 2.0
RECOGNIZER_SEED = 4321
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# Offsets from the cell's corner in cell units, emitted right eye (image right), left eye, nose, right mouth, left.
KPS_OFFSETS = (ARCFACE_TEMPLATE / 112.0)[[1, 0, 2, 4, 3]]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="closeup-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_yunet(path: Path) -> Path:
    nodes, inits, outputs = [], [], []
    for stride in STRIDES:
        pooled, brightness = f"pool_{stride}", f"bright_{stride}"
        nodes.append(helper.make_node("AveragePool", ["input"], [pooled], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        nodes.append(helper.make_node("ReduceMean", [pooled], [brightness], axes=[1], keepdims=1))
        for head, channels in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
            weight = np.zeros((channels, 1, 1, 1), np.float32)
            if head in ("cls", "obj"):
                weight[:] = 0.2 if stride == 32 else 0.0
                bias = np.full(channels, -40.0 if stride == 32 else -30.0, np.float32)
            elif head == "bbox":
                bias = np.array([0.5, 0.5, np.log(BOX_CELLS), np.log(BOX_CELLS)], np.float32)
            else:
                bias = KPS_OFFSETS.reshape(-1).astype(np.float32)
            inits += [numpy_helper.from_array(weight, f"{head}_{stride}_w"),
                      numpy_helper.from_array(bias, f"{head}_{stride}_b")]
            conv = f"{head}_{stride}_conv"
            nodes.append(helper.make_node("Conv", [brightness, f"{head}_{stride}_w", f"{head}_{stride}_b"], [conv]))
            if head in ("cls", "obj"):
                nodes.append(helper.make_node("Sigmoid", [conv], [f"{conv}_s"]))
                conv = f"{conv}_s"
            nodes.append(helper.make_node("Transpose", [conv], [f"{conv}_t"], perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([1, -1, channels], np.int64), f"{head}_{stride}_shape"))
            nodes.append(helper.make_node("Reshape", [f"{conv}_t", f"{head}_{stride}_shape"], [f"{head}_{stride}"]))
            outputs.append(helper.make_tensor_value_info(f"{head}_{stride}", TensorProto.FLOAT, [1, None, channels]))
    order = [f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in STRIDES]
    outputs.sort(key=lambda info: order.index(info.name))
    graph = helper.make_graph(nodes, "tiny-yunet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])],
                              outputs, inits)
    return _save(graph, path)


def recognizer_matrix() -> np.ndarray:
    return np.random.default_rng(RECOGNIZER_SEED).normal(0.0, 1e-2, (3 * 14 * 14, 128)).astype(np.float32)


def build_sface(path: Path) -> Path:
    nodes = [helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["fc1"])]
    graph = helper.make_graph(nodes, "tiny-sface",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 128])],
                              [numpy_helper.from_array(recognizer_matrix(), "w")])
    return _save(graph, path)


def build_models(folder: Path) -> Path:
    """Both files, under the names the backend downloads them as."""
    from generation.faces.opencv_backend import DETECTOR, RECOGNIZER

    build_yunet(folder / DETECTOR.file)
    build_sface(folder / RECOGNIZER.file)
    return folder
