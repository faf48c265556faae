"""Datasets and bag I/O: the native synthetic format, the Oxford/PointNetVLAD
benchmark format and rosbag2 readers/writers.  No rclpy here."""
