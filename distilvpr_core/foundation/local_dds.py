"""The one local-DDS policy: ROS 2 traffic never leaves this machine.

Every tool that starts or talks to a ROS node (the demo, replay evaluation,
node benchmarks, tests) gets its environment from :func:`local_dds_env`:
``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set to LOCALHOST when unset and any
other value is refused (``ROS_LOCALHOST_ONLY`` is ignored on Kilted, static
peers would be contacted even with LOCALHOST), and ``ROS_DOMAIN_ID`` is a
random domain when unset.  Plain environment variables only: no ROS import.
"""
from __future__ import annotations

import os
import random
import sys
from typing import MutableMapping

from .errors import UserError


#: Fast DDS 2.x (Humble, Jazzy) reads only the first; Fast DDS 3 (Kilted) reads the
#: second, and Kilted's rmw_fastrtps still applies the first with a deprecation warning.
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def select_fastdds_profile(env: MutableMapping[str, str], profiles_file: str | None) -> None:
    """Point both Fast DDS profile variables at one file, so the profile is
    used whichever Fast DDS the ROS distribution ships.

    A profile the user chose (either variable) wins over ``profiles_file`` and
    is copied into the other variable, so a Humble habit
    (``FASTRTPS_DEFAULT_PROFILES_FILE``) keeps working on Kilted and back.
    """
    chosen = next((env[v] for v in PROFILE_VARS if env.get(v)), None) or profiles_file
    if chosen:
        for var in PROFILE_VARS:
            if not env.get(var):
                env[var] = chosen


def local_dds_env(env: MutableMapping[str, str] | None = None,
                  profiles_file: str | None = None) -> dict[str, str]:
    """Make ``env`` (default ``os.environ``; call before ``rclpy.init``) local-only;
    return a copy for child processes.

    ``profiles_file``: a Fast DDS XML profile to select unless the user chose
    one already (the shared-memory profile for large raw images); see
    :func:`select_fastdds_profile`.
    """
    env = os.environ if env is None else env
    select_fastdds_profile(env, profiles_file)
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    if rng not in (None, "", "LOCALHOST"):
        raise UserError(f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng}: must be LOCALHOST (or unset) so DDS "
                        "traffic stays on this machine")
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.pop("ROS_STATIC_PEERS", None)
    # 1..101 keeps the DDS ports valid (larger ids collide with ephemeral ports).
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    return dict(env)
