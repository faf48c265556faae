"""Bag replay over DDS: the localizer as a process, a bag player, replay evaluation.

* :mod:`.node_process` start the localizer as a real process, local-only DDS
* :mod:`.player`       publish a bag's images, collect the node's answers
* :mod:`.session`      one replay session: start/attach, warm up, play, collect
* :mod:`.replay_eval`  ``distilvpr replay-eval``: ROS, offline and compared reports
"""
