"""rosbag2 ``metadata.yaml`` that Humble, Jazzy and Kilted all read.

``rosbags`` writes metadata version 8 or 9.  Humble's rosbag2 writes version 5
and its reader (rosbag2_storage ``metadata_io.cpp``, humble branch) parses
only the fields it knows, by version: version 9 turns
``offered_qos_profiles`` into a YAML list, which Humble reads as a string
and fails on.  Jazzy and Kilted read every older version (``yaml.hpp``
guards each newer field with ``version >= N``).  So the newest version all
three read is 5: :func:`downgrade_to_v5` rewrites a version-8 file to
exactly Humble's version-5 fields (dropping ``custom_data``, ``ros_distro``
and ``type_description_hash``, which the data does not need).  Humble's
default storage is sqlite3; mcap needs the ``rosbag2_storage_mcap`` plugin
there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..foundation.atomic import write_text_atomic
from ..foundation.errors import UserError
from ..foundation.safe_yaml import read_yaml_file

HUMBLE_VERSION = 5
#: Keys of ``rosbag2_bagfile_information`` Humble's reader parses at version 5.
HUMBLE_KEYS = ("version", "storage_identifier", "duration", "starting_time", "message_count",
               "topics_with_message_count", "compression_format", "compression_mode",
               "relative_file_paths", "files")
HUMBLE_TOPIC_KEYS = ("name", "type", "serialization_format", "offered_qos_profiles")
HUMBLE_STORAGE = ("sqlite3", "mcap")


def humble_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """``rosbag2_bagfile_information`` (version >= 5, QoS as a string) reduced to version 5."""
    if int(info.get("version", 0)) < HUMBLE_VERSION or int(info["version"]) >= 9:
        raise UserError(f"bag metadata version {info.get('version')}: expected 5 to 8 to downgrade "
                        "(version 9 stores QoS as a list Humble cannot read)")
    out = {k: info[k] for k in HUMBLE_KEYS if k in info}
    out["version"] = HUMBLE_VERSION
    out["topics_with_message_count"] = [
        {"message_count": t["message_count"],
         "topic_metadata": {k: t["topic_metadata"][k] for k in HUMBLE_TOPIC_KEYS}}
        for t in info["topics_with_message_count"]]
    return out


def downgrade_to_v5(bag_dir: str | Path) -> Path:
    """Rewrite ``bag_dir/metadata.yaml`` (atomically) as version 5; returns its path."""
    path = Path(bag_dir) / "metadata.yaml"
    data = read_yaml_file(path)
    data["rosbag2_bagfile_information"] = humble_metadata(data["rosbag2_bagfile_information"])
    return write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def humble_problems(bag_dir: str | Path) -> list[str]:
    """Why Humble's rosbag2 (default plugins) could not read ``bag_dir``'s
    metadata; empty when it can.  Mirrors the humble reader's checks."""
    info = read_yaml_file(Path(bag_dir) / "metadata.yaml")["rosbag2_bagfile_information"]
    out = []
    if info.get("version") != HUMBLE_VERSION:
        out.append(f"version {info.get('version')} (Humble writes and fully parses {HUMBLE_VERSION})")
    if info.get("storage_identifier") not in HUMBLE_STORAGE:
        out.append(f"storage {info.get('storage_identifier')!r} (Humble: sqlite3, mcap with its plugin)")
    missing = [k for k in HUMBLE_KEYS if k not in info]
    if missing:
        out.append(f"missing keys {missing}")
    for t in info.get("topics_with_message_count", []):
        meta = t.get("topic_metadata", {})
        if not isinstance(meta.get("offered_qos_profiles"), str):
            out.append(f"{meta.get('name')}: offered_qos_profiles is not a string")
        if set(meta) != set(HUMBLE_TOPIC_KEYS):
            out.append(f"{meta.get('name')}: topic keys {sorted(meta)} differ from Humble's")
    for f in info.get("files", []):
        if set(f) != {"path", "starting_time", "duration", "message_count"}:
            out.append(f"files entry keys {sorted(f)}")
    return out
