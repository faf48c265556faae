"""The ROS-free localization engine shared by the node, offline evaluation and benchmarks.

* :mod:`.settings`  :class:`LocalizerSettings`, the one settings class (node
  parameters, launch arguments and replay settings derive from it)
* :mod:`.engine`    decode -> gate -> embed -> search -> filters -> candidates
* :mod:`.filters`   keyframe gate and temporal-consistency filter
* :mod:`.odom`      odometry poses looked up by image stamp
* :mod:`.resources` load model + map, checking the map against the model

Importing this package imports neither torch nor rclpy.
"""
