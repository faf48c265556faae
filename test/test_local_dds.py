"""One Fast DDS profile story for Humble, Jazzy and Kilted, and the local-only DDS policy."""
from __future__ import annotations

import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.foundation.local_dds import PROFILE_VARS, local_dds_env, select_fastdds_profile

FASTRTPS, FASTDDS = PROFILE_VARS


def test_both_profile_variables_point_at_the_profile():
    env = local_dds_env({}, "/share/fastdds_large_images.xml")
    # Fast DDS 2.x (Humble, Jazzy) reads FASTRTPS_..., Fast DDS 3 (Kilted) FASTDDS_...
    assert env[FASTRTPS] == env[FASTDDS] == "/share/fastdds_large_images.xml"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and 1 <= int(env["ROS_DOMAIN_ID"]) <= 101


@pytest.mark.parametrize("given", [FASTRTPS, FASTDDS])
def test_a_users_profile_wins_and_is_mirrored_into_the_other_variable(given):
    env = {given: "/mine.xml"}
    select_fastdds_profile(env, "/share/fastdds_large_images.xml")
    assert env == {FASTRTPS: "/mine.xml", FASTDDS: "/mine.xml"}


def test_no_profile_means_no_variables_and_other_ranges_are_refused():
    env = local_dds_env({"ROS_DOMAIN_ID": "7"})
    assert FASTRTPS not in env and FASTDDS not in env and env["ROS_DOMAIN_ID"] == "7"
    with pytest.raises(UserError, match="ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET"):
        local_dds_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})


def test_the_profile_file_names_both_variables(repo_root):
    text = (repo_root / "config" / "fastdds_large_images.xml").read_text()
    assert FASTRTPS in text and FASTDDS in text
