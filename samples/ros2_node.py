"""A ROS 2 node for referring segmentation (as ROS2-NanoOWL does for detection): image + prompt topics in,
mask / detections / overlay out. Runs where rclpy is installed (a ROS 2 Humble / Jazzy environment):

    python samples/ros2_node.py --bundle build/bundle --prompt "the red cup"
    python samples/ros2_node.py --server grpc://gpu-server:8001 --prompt "the red cup"   # inference on a server
    ros2 topic pub --once /ssp/prompt std_msgs/String "data: 'the red cup; the blue box'"

Topics (names are ROS parameters): in ``/image`` (sensor_msgs/Image: bgr8, rgb8, bgra8, rgba8, mono8, mono16) and
``/ssp/prompt`` (std_msgs/String, prompts separated by ';'); out ``/ssp/mask`` (sensor_msgs/Image mono8 labels:
1 + prompt index where found), ``/ssp/detections`` (vision_msgs/Detection2DArray: box and score per found prompt;
when vision_msgs is not installed, std_msgs/String JSON instead) and ``/ssp/output_image`` (bgr8 overlay).
Only the newest image is processed (a timer picks it up), so a slow model never builds a backlog.
The message conversion lives in samples/ros2_msgs.py (tested without rclpy, with rosbags).
"""

from __future__ import annotations

import argparse
import array
import json
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ros2_msgs  # noqa: E402


def _make_image(Image):  # noqa: N803 -- the message class
    def make(**kw):
        kw["data"] = array.array("B", kw["data"].tobytes())
        return Image(**kw)

    return make


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=None, help="bundle folder (local inference)")
    ap.add_argument("--server", default=None, help="grpc://HOST:8001 or http://HOST:8000: RemoteSegmenter instead")
    ap.add_argument("--token", default=None, help="the server's access token (ssp serve --token)")
    ap.add_argument("--prompt", action="append", default=[], help="initial prompt (repeatable)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--rate", type=float, default=30.0, help="how often to look for a new image (Hz)")
    args, ros_args = ap.parse_known_args(argv)
    if not args.bundle and not args.server:
        ap.error("give --bundle (local) or --server (remote)")
    try:
        import rclpy
        from rclpy.node import Node
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
    except ImportError:
        print(
            "ros2_node.py needs ROS 2 (rclpy, sensor_msgs, std_msgs): source your ROS 2 setup.bash first",
            file=sys.stderr,
        )
        return 2
    try:
        from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion
        from vision_msgs import msg as vm

        vision = SimpleNamespace(
            Detection2DArray=vm.Detection2DArray,
            Detection2D=vm.Detection2D,
            ObjectHypothesisWithPose=vm.ObjectHypothesisWithPose,
            ObjectHypothesis=vm.ObjectHypothesis,
            BoundingBox2D=vm.BoundingBox2D,
            Pose2D=vm.Pose2D,
            Point2D=vm.Point2D,
            PoseWithCovariance=PoseWithCovariance,
            Pose=Pose,
            Point=Point,
            Quaternion=Quaternion,
        )
    except ImportError:
        vision = None

    from ssp_edge.sdk.overlay import draw

    if args.server:
        from ssp_edge.sdk.remote import RemoteSegmenter

        seg = RemoteSegmenter.open(args.server, token=args.token)  # the one line that differs
    else:
        from ssp_edge.sdk.segmenter import Segmenter

        seg = Segmenter.open(args.bundle, backend=args.backend)
    if args.prompt:
        seg.set_prompts(args.prompt)
    make = _make_image(Image)

    class SSPNode(Node):
        def __init__(self) -> None:
            super().__init__("ssp_segmenter")
            image_topic = self.declare_parameter("image_topic", "/image").value
            prompt_topic = self.declare_parameter("prompt_topic", "/ssp/prompt").value
            self.latest = None
            self.create_subscription(Image, image_topic, self._on_image, 1)
            self.create_subscription(String, prompt_topic, self._on_prompt, 10)
            self.mask_pub = self.create_publisher(Image, "/ssp/mask", 1)
            self.overlay_pub = self.create_publisher(Image, "/ssp/output_image", 1)
            self.det_pub = self.create_publisher(vision.Detection2DArray if vision else String, "/ssp/detections", 1)
            self.create_timer(1.0 / args.rate, self._tick)

        def _on_image(self, msg) -> None:
            self.latest = msg  # keep only the newest

        def _on_prompt(self, msg) -> None:
            prompts = [p.strip() for p in msg.data.split(";") if p.strip()]
            if prompts:
                try:
                    seg.set_prompts(prompts)
                    self.get_logger().info(f"prompts -> {prompts}")
                except Exception as e:  # a bad prompt list is logged; the node keeps running
                    self.get_logger().error(str(e))

        def _tick(self) -> None:
            msg, self.latest = self.latest, None
            if msg is None or not seg.prompts:
                return
            try:
                frame = ros2_msgs.image_to_bgr(msg)
                results = seg.segment(frame)
            except Exception as e:
                self.get_logger().error(f"frame skipped: {e}")
                return
            self.mask_pub.publish(ros2_msgs.label_image([r.mask for r in results], msg.header, make))
            self.overlay_pub.publish(ros2_msgs.array_to_image(draw(frame, results), "bgr8", msg.header, make))
            dets = ros2_msgs.detections(results)
            if vision is not None:
                self.det_pub.publish(ros2_msgs.fill_detection_array(dets, msg.header, vision))
            else:
                self.det_pub.publish(String(data=json.dumps([asdict(d) for d in dets])))

    rclpy.init(args=ros_args)
    node = SSPNode()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.shutdown()
        seg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
