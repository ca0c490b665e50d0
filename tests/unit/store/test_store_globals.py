"""The handle store keeps no module-level state (shared/STYLE.md rule 15): it
is injected, never a global.  Its imports are in tests/unit/test_layering.py."""

import ast
import pathlib

STORE = pathlib.Path(__file__).resolve().parents[3] / "smbcad" / "store"


def test_no_module_level_mutable_state():
    """STYLE rule 15: no module-level dicts, lists or sets to mutate."""
    for path in STORE.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if [getattr(t, "id", None) for t in targets] == ["__all__"]:
                    continue
                value = node.value
                assert not isinstance(value, (ast.Dict, ast.List, ast.Set, ast.ListComp,
                                              ast.DictComp, ast.SetComp)), \
                    f"{path.name}:{node.lineno} module-level mutable value"
