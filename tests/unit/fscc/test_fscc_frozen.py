"""Every structure the fscc package decodes is a frozen dataclass (shared/STYLE.md
rule 5).  Its imports and size are in tests/unit/test_layering.py."""

import dataclasses
import inspect

import smbcad.proto.fscc as fscc


def test_public_dataclasses_are_frozen():
    for name in fscc.__all__:
        obj = getattr(fscc, name)
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            assert obj.__dataclass_params__.frozen, name
