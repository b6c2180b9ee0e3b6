"""ROS 2 message conversion for samples/ros2_node.py, without rclpy: sensor_msgs/Image <-> numpy frames and masks,
and Segmenter Results -> vision_msgs/Detection2DArray fields (box centre / size, score).

Messages are duck-typed: anything with the fields of ``sensor_msgs/msg/Image`` (rclpy's classes, rosbags'
dataclasses) works, and constructors are passed in, so the same code runs in the node and in the tests.
Encodings: ``bgr8``, ``rgb8``, ``bgra8``, ``rgba8``, ``mono8``, ``mono16`` (8- and 16-bit, either byte order;
rows may be padded: ``step`` >= width * bytes per pixel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ENCODINGS",
    "image_to_array",
    "image_to_bgr",
    "array_to_image",
    "mask_to_image",
    "label_image",
    "Detection",
    "detections",
    "fill_detection_array",
]

#: encoding -> (dtype, channels)
ENCODINGS = {
    "bgr8": (np.uint8, 3),
    "rgb8": (np.uint8, 3),
    "bgra8": (np.uint8, 4),
    "rgba8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "16UC1": (np.uint16, 1),
}


def _layout(encoding: str) -> tuple[np.dtype, int]:
    if encoding not in ENCODINGS:
        raise ValueError(f"image encoding {encoding!r} is not supported (use one of {', '.join(ENCODINGS)})")
    dtype, ch = ENCODINGS[encoding]
    return np.dtype(dtype), ch


def image_to_array(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image -> (H, W) or (H, W, C) array in the message's own encoding (a copy; padding dropped,
    16-bit values in this machine's byte order)."""
    dtype, ch = _layout(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * ch * dtype.itemsize
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes(), np.uint8)
    if step < row or data.size < step * h:
        raise ValueError(
            f"image message {w}x{h} {msg.encoding}: step {step} / {data.size} bytes is too small for "
            f"{row} bytes per row"
        )
    rows = data[: step * h].reshape(h, step)[:, :row]
    big = bool(msg.is_bigendian) and dtype.itemsize > 1
    arr = np.ascontiguousarray(rows).view(dtype.newbyteorder(">") if big else dtype.newbyteorder("<"))
    arr = arr.astype(dtype)  # native order
    return arr.reshape(h, w, ch) if ch > 1 else arr.reshape(h, w)


def image_to_bgr(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image -> (H, W, 3) uint8 BGR, what ``Segmenter.segment`` takes (16-bit keeps the high byte)."""
    arr = image_to_array(msg)
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    enc = msg.encoding
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if enc in ("rgb8", "rgba8"):
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return np.ascontiguousarray(arr[:, :, :3])


def array_to_image(
    arr: np.ndarray,
    encoding: str,
    header: Any,
    make: Callable[..., Any],
    bigendian: bool = False,
    step: int | None = None,
) -> Any:
    """(H, W[, C]) array -> a sensor_msgs/Image built by ``make(header=, height=, width=, encoding=, is_bigendian=,
    step=, data=)`` (rclpy: ``sensor_msgs.msg.Image``; rosbags: its dataclass); rows padded to ``step``."""
    dtype, ch = _layout(encoding)
    a = np.asarray(arr)
    if a.dtype != dtype or (a.ndim == 3 and a.shape[2] != ch) or (a.ndim == 2 and ch != 1) or a.ndim not in (2, 3):
        raise ValueError(f"array {a.shape} {a.dtype} does not fit encoding {encoding} ({ch} x {dtype})")
    h, w = a.shape[:2]
    row = w * ch * dtype.itemsize
    step = row if step is None else int(step)
    if step < row:
        raise ValueError(f"step {step} is smaller than a row ({row} bytes)")
    raw = np.ascontiguousarray(a.astype(dtype.newbyteorder(">" if bigendian else "<"))).view(np.uint8).reshape(h, row)
    if step > row:
        raw = np.concatenate([raw, np.zeros((h, step - row), np.uint8)], axis=1)
    return make(
        header=header,
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(bigendian and dtype.itemsize > 1),
        step=step,
        data=np.ascontiguousarray(raw).reshape(-1),
    )


def mask_to_image(mask: np.ndarray, header: Any, make: Callable[..., Any]) -> Any:
    """A {0, 1} mask -> mono8 Image with 0 / 255 (how ROS image viewers show masks)."""
    return array_to_image((np.asarray(mask) > 0).astype(np.uint8) * 255, "mono8", header, make)


def label_image(masks: Sequence[np.ndarray], header: Any, make: Callable[..., Any]) -> Any:
    """Several prompts' masks -> one mono8 label image: pixel = 1 + index of the first prompt found there, else 0."""
    if not masks:
        raise ValueError("label_image needs at least one mask")
    labels = np.zeros(np.asarray(masks[0]).shape, np.uint8)
    for i, m in reversed(list(enumerate(masks))):
        labels[np.asarray(m) > 0] = i + 1
    return array_to_image(labels, "mono8", header, make)


@dataclass
class Detection:
    """One prompt on one frame as vision_msgs/Detection2D carries it: box centre / size in pixels, class, score."""

    class_id: str
    score: float
    center_x: float
    center_y: float
    size_x: float
    size_y: float


def detections(results: Sequence[Any]) -> list[Detection]:
    """Results whose target exists and whose mask is not empty -> their boxes (inclusive pixel extents)."""
    out = []
    for r in results:
        ys, xs = np.nonzero(r.mask)
        if not r.exists or len(xs) == 0:
            continue
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        out.append(
            Detection(
                r.prompt, float(r.score), (x0 + x1) / 2.0, (y0 + y1) / 2.0, float(x1 - x0 + 1), float(y1 - y0 + 1)
            )
        )
    return out


def fill_detection_array(dets: Sequence[Detection], header: Any, types: Any) -> Any:
    """vision_msgs/Detection2DArray from ``types`` (a namespace with Detection2DArray, Detection2D,
    ObjectHypothesisWithPose, ObjectHypothesis, BoundingBox2D, Pose2D, Point2D, PoseWithCovariance, Pose, Point,
    Quaternion constructors taking the fields as keywords)."""
    items = []
    for d in dets:
        pose = types.PoseWithCovariance(
            pose=types.Pose(
                position=types.Point(x=0.0, y=0.0, z=0.0), orientation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
            ),
            covariance=np.zeros(36, np.float64),
        )
        hyp = types.ObjectHypothesisWithPose(
            hypothesis=types.ObjectHypothesis(class_id=d.class_id, score=d.score), pose=pose
        )
        bbox = types.BoundingBox2D(
            center=types.Pose2D(position=types.Point2D(x=d.center_x, y=d.center_y), theta=0.0),
            size_x=d.size_x,
            size_y=d.size_y,
        )
        items.append(types.Detection2D(header=header, results=[hyp], bbox=bbox, id=d.class_id))
    return types.Detection2DArray(header=header, detections=items)
