"""Loop-closure evaluation shared by the offline and the ROS replay paths.

Pure Python (numpy, matplotlib); never imports rclpy or torch at import time.

* :mod:`.outcome`     one query frame's ground truth and candidates
* :mod:`.matching`    join received answers to sent frames by header stamp
* :mod:`.groundtruth` interpolate a pose track at image stamps
* :mod:`.metrics`     Recall@N, precision-recall, AUC, latency
* :mod:`.report`      metrics.json, report.md, per_query.csv, PNG plots
* :mod:`.bagsource`   checked reading of image + pose topics from a rosbag2
* :mod:`.offline`     evaluate a PriorMap with an Embedder, no ROS
"""
