"""distilvpr_core: DistilVPR training, export, inference and prior maps.

Pure Python (torch, numpy, faiss, onnxruntime); never imports rclpy, so it is
usable without ROS.  Importing the package has no side effects and pulls in
no heavy dependency: submodules import what they need.
"""

__version__ = "0.1.0"
