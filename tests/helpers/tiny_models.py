"""Tiny but real ONNX, SavedModel and TFLite detectors, written by the tests, whose outputs are known.

Each finds red: the ONNX graphs work like tests/models/tiny_darknet.py (every red cell of a 32x32
input reports a box of class 0 centred on it, 8x8 input pixels); the TensorFlow ones return one box
around all red pixels (score 0.9, class 1 in the label map) and nothing when there is no red.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_onnx_yolo(path: Path, layout: str = "yolov5", classes: int = 2) -> Path:
    """A 32x32-input YOLO export in the ``yolov5`` ((1, N, 5+C)) or ``yolov8`` ((1, 4+C, N)) layout."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size, n = 32, 32 * 32
    head = 5 if layout == "yolov5" else 4  # channels before the class scores
    channels = head + classes
    weight = np.zeros((channels, 3, 1, 1), np.float32)
    bias = np.zeros(channels, np.float32)
    scored = list(range(4, channels))  # objectness (v5) and class scores: sigmoid(20 R - 10) for class 0, off for the rest
    bias[scored] = -10.0
    weight[4, 0, 0, 0] = 20.0
    weight[head, 0, 0, 0] = 20.0
    grid = np.zeros((1, channels, size, size), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    grid[0, 0], grid[0, 1], grid[0, 2], grid[0, 3] = xs + 0.5, ys + 0.5, 8.0, 8.0
    mask = np.zeros((1, channels, 1, 1), np.float32)
    mask[0, scored] = 1.0
    nodes = [
        helper.make_node("Conv", ["images", "W", "B"], ["conv"]),
        helper.make_node("Sigmoid", ["conv"], ["sig"]),
        helper.make_node("Mul", ["sig", "mask"], ["scores"]),
        helper.make_node("Add", ["scores", "grid"], ["maps"]),
        helper.make_node("Reshape", ["maps", "shape"], ["flat"]),
    ]
    out_shape = [1, channels, n]
    if layout == "yolov5":
        nodes.append(helper.make_node("Transpose", ["flat"], ["output0"], perm=[0, 2, 1]))
        out_shape = [1, n, channels]
    else:
        nodes[-1] = helper.make_node("Reshape", ["maps", "shape"], ["output0"])
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B"), numpy_helper.from_array(mask, "mask"),
             numpy_helper.from_array(grid, "grid"), numpy_helper.from_array(np.array([1, channels, n], np.int64), "shape")]
    graph = helper.make_graph(nodes, "tiny-yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _red_box_module(fixed_size: int | None):
    import tensorflow as tf

    shape = [1, fixed_size, fixed_size, 3] if fixed_size else [1, None, None, 3]

    class RedBox(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shape, tf.uint8, name="input_tensor")])
        def __call__(self, image):
            pixels = tf.cast(image[0], tf.int32)
            red = tf.logical_and(pixels[..., 0] > 200, pixels[..., 1] < 60)
            where = tf.cast(tf.where(red), tf.float32)
            size = tf.cast(tf.shape(pixels)[:2], tf.float32)
            found = tf.shape(where)[0] > 0
            lo = tf.where(found, tf.reduce_min(tf.concat([where, [[1e9, 1e9]]], 0), axis=0), [0.0, 0.0])
            hi = tf.where(found, tf.reduce_max(tf.concat([where, [[-1.0, -1.0]]], 0), axis=0) + 1.0, [0.0, 0.0])
            box = tf.concat([lo / size, hi / size], 0)  # ymin, xmin, ymax, xmax, normalised
            score = tf.where(found, 0.9, 0.0)
            return {
                "detection_boxes": tf.reshape(box, [1, 1, 4]),
                "detection_scores": tf.reshape(score, [1, 1]),
                "detection_classes": tf.ones([1, 1], tf.float32),
                "num_detections": tf.ones([1], tf.float32),
            }

    return RedBox()


def write_saved_model(folder: Path) -> Path:
    import tensorflow as tf

    module = _red_box_module(None)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.__call__})
    return folder


def write_tflite(path: Path, size: int = 64) -> Path:
    import tensorflow as tf

    module = _red_box_module(size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())
    return path


def write_label_map(path: Path, names: list[str]) -> Path:
    path.write_text("".join(f'item {{\n  id: {i}\n  name: "{name}"\n}}\n' for i, name in enumerate(names, 1)))
    return path
