"""The floors of the house: no module of fastrft imports from a higher layer.

Every `import fastrft...`, `from fastrft... import` and relative import in fastrft/ and
kernels/ (installed as fastrft.kernels) is read from the source, those inside functions and
under TYPE_CHECKING included. A module may import from its own unit or from a lower layer.
Left out, with their reason: a module's `if __name__ == "__main__":` block, which runs it as
a script and is imported by nobody.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# lowest first; within a layer each unit (a module, or a package and all it holds) stands
# alone: units of one layer import nothing from each other
LAYERS = (
    ("kernels",),  # the Triton kernels and their references
    # leaves: plain Python (toy: torch only), named by what they hold
    (
        *("__init__", "errors", "atomic", "paths", "locks", "lifetime", "attack_registry"),
        *("budgets", "datasets", "results", "toy"),
    ),
    ("attacks",),
    ("models", "objectives", "schedules"),
    ("config",),
    ("data", "optim", "weights"),
    ("evaluate",),  # pure measures of a model on batches
    ("engine",),  # training, and evaluation of saved runs
    ("sweep", "bench"),
    ("report",),  # reads sweeps' ledgers
    ("demo",),
    ("cli",),
)
# modules that belong to another unit: the demo's options parse before its work is imported;
# `python -m fastrft` is the command
UNIT_OF = {"demo_options": "demo", "__main__": "cli"}
LAYER = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}


def _sources() -> dict[str, Path]:
    """Each module's dotted name (fastrft.engine.trainer) and its file."""
    out = {}
    for base, package in ((ROOT / "fastrft", "fastrft"), (ROOT / "kernels", "fastrft.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[0] == "kernels" and package == "fastrft":
                continue  # the fastrft/kernels link: read from kernels/
            if parts[-1] == "__init__" and len(parts) > 1:
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


SOURCES = _sources()


def _unit(module: str) -> str:
    """The unit of a dotted name: fastrft.engine.trainer -> engine; a name the package itself
    holds (fastrft.__version__) -> __init__."""
    parts = module.split(".")
    if len(parts) == 1 or f"fastrft.{parts[1]}" not in SOURCES:
        return "__init__"
    return UNIT_OF.get(parts[1], parts[1])


def _outside_main_block(tree: ast.Module) -> list[ast.AST]:
    """The module's nodes, its `if __name__ == "__main__":` block left out."""

    def is_main_block(node: ast.stmt) -> bool:
        test = getattr(node, "test", None)
        return (
            isinstance(node, ast.If)
            and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
        )

    return [node for top in tree.body if not is_main_block(top) for node in ast.walk(top)]


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported fastrft module) for each import in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in _outside_main_block(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("fastrft")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base != "fastrft" and not base.startswith("fastrft."):
                continue
            if base == "fastrft":  # from fastrft import locks: the module, else the package
                out += [(node.lineno, f"fastrft.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, base))
    return out


def test_every_module_has_a_layer():
    units = {_unit(m) for m in SOURCES}
    assert units <= set(LAYER), f"place these in LAYERS: {sorted(units - set(LAYER))}"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_import_runs_up_a_layer(module):
    own = _unit(module)
    upward = []
    for line, target in _imports(module, SOURCES[module]):
        unit = _unit(target)
        if unit != own and LAYER[unit] >= LAYER[own]:
            upward.append(f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target} ({unit})")
    assert not upward, "\n".join(upward)
