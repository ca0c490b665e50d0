"""The placement's file in ``state_dir`` (``clusdisk.placement``), so a
restarted clusdisk knows where the aggregates went: JSON written to a
temporary file, fsynced, renamed over the old one, directory fsynced (a
crash leaves the old or the new placement, never a torn one)."""

import json
import logging
import os

from clusdisk import placement as placement_mod
from clusdisk.placement import Placement, PlacementError

log = logging.getLogger("clusdisk.placement")

FILE_NAME = "clusdisk.placement.json"


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PlacementFile:
    def __init__(self, state_dir: str, aggregates, node_ids) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)
        self.aggregates = tuple(aggregates)
        self.node_ids = tuple(node_ids)

    def load(self) -> Placement:
        """The saved placement, or the default one (no file, or a file that
        does not fit the configuration: logged)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            return Placement.from_json(data, self.aggregates, self.node_ids)
        except FileNotFoundError:
            return placement_mod.default(self.aggregates)
        except (OSError, ValueError, PlacementError) as exc:
            log.error("ignoring the placement in %s (%s): every aggregate on its home node",
                      self.path, exc)
            return placement_mod.default(self.aggregates)

    def save(self, placement: Placement) -> None:
        """Raises OSError (the caller decides whether that stops it)."""
        write_atomically(self.path, json.dumps(placement.to_json(), indent=1) + "\n")
