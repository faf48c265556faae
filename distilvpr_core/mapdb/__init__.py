"""The prior map: FAISS index + keyframe metadata, versioned and verified on disk.

See docs/map.md for the directory format and docs/contracts.md ("Prior map")
for the API the node relies on.
"""
from .priormap import PriorMap, SearchResult
from .schema import FORMAT_VERSION, MapSchema
from .merge import merge_maps

__all__ = ["PriorMap", "SearchResult", "MapSchema", "FORMAT_VERSION", "merge_maps"]
