"""Core ``logging`` records into the node's ROS logger (so they reach /rosout).

The engine and the map (``distilvpr_core``) log through Python ``logging``
under the ``distilvpr`` and ``distilvpr_core`` loggers; without this they
print bare lines to stderr that /rosout, ``ros2 topic echo /rosout`` and
rqt_console never see.  :func:`forward_core_logs` attaches one handler that
passes each record to ``node.get_logger()`` at the matching severity.
"""
from __future__ import annotations

import logging
from typing import Any

#: The core's logger roots (``logging.getLogger("distilvpr.localize")``, ``getLogger(__name__)``).
CORE_LOGGERS = ("distilvpr", "distilvpr_core")


class RosLogHandler(logging.Handler):
    """Forwards records to an rclpy logger (severity numbers equal Python's levels)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            level = record.levelno
            log = (self.ros_logger.fatal if level >= logging.CRITICAL else
                   self.ros_logger.error if level >= logging.ERROR else
                   self.ros_logger.warning if level >= logging.WARNING else
                   self.ros_logger.info if level >= logging.INFO else self.ros_logger.debug)
            log(text)
        except Exception:  # logging must never take the node down
            self.handleError(record)


def forward_core_logs(ros_logger: Any) -> RosLogHandler:
    """Attach a :class:`RosLogHandler` to the core's loggers at the ROS
    logger's level; returns it for :func:`stop_forwarding`.  The core
    loggers stop propagating meanwhile, so a record is printed once."""
    handler = RosLogHandler(ros_logger)
    level = int(ros_logger.get_effective_level())
    for name in CORE_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return handler


def stop_forwarding(handler: RosLogHandler) -> None:
    """Detach ``handler`` again (the node is gone; its logger must not be called)."""
    for name in CORE_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        if not any(isinstance(h, RosLogHandler) for h in logger.handlers):
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
