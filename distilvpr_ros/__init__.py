"""distilvpr_ros: the thin rclpy layer of distilvpr.

Nodes (``localizer``), message conversion without cv_bridge, the
PointCloud2 candidate table, keyframe gating and bag replay evaluation.
Importing the package has no side effects and does not import rclpy or torch;
each module imports what it needs.
"""
