"""distilvpr_ros: the thin rclpy layer of distilvpr.

The ``localizer`` node (ROS wiring around the ROS-free
:class:`distilvpr_core.localize.engine.LocalizationEngine`), parameter
declaration from its settings, output messages, the PointCloud2 candidate
table, launch arguments, bag replay over DDS (:mod:`.replay`) and the
``distilvpr`` subcommands that need ROS (:mod:`.commands`).
Importing the package has no side effects and does not import rclpy or torch;
each module imports what it needs.
"""
