"""Loop-closure evaluation shared by the offline and the ROS replay paths.

Pure Python (numpy, matplotlib); never imports rclpy or torch at import time.

* :mod:`.outcome`     one query frame's ground truth and candidates
* :mod:`.matching`    join received answers to sent frames by header stamp
* :mod:`.groundtruth` interpolate a pose track at image stamps
* :mod:`.metrics`     Recall@N, precision-recall, AUC, latency
* :mod:`.report`      metrics.json, report.md, per_query.csv, PNG plots
* :mod:`.offline`     run the node's localization engine on a bag or dataset, no ROS
"""
