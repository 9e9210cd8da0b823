"""The house's walls: the cache stands on its own (stage 1 and 2 read it; it imports neither)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports, at top level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_cache_imports_a_stage():
    offenders = {f"{path.relative_to(ROOT)}: {name}" for path in (ROOT / "cache").rglob("*.py")
                 for name in imported_modules(path) if name.split(".")[0] in ("fuse", "extract")}
    assert not offenders, sorted(offenders)


# fuse/'s rooms, lowest first (fuse/__init__.py): a module imports only from its own room or lower
RANKS = {"metrics": 0, "folders": 0, "models": 1, "inputs": 2, "training": 3, "results": 4, "sweeps": 5}
COMMANDS = 6  # train.py, predict.py, sweep.py, semi.py and semi_members.py


def fuse_rank(module: str) -> int:
    """'fuse.training.loop' -> 3; a command module -> COMMANDS."""
    parts = module.split(".")
    return RANKS.get(parts[1], COMMANDS) if len(parts) > 1 else COMMANDS


def fuse_imports(path: Path) -> set[str]:
    """fuse modules a file of fuse/ imports, relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module == "fuse" or (node.level and not node.module):  # from fuse import room_module
                names |= {f"{module}.{a.name}" for a in node.names}
            elif module.startswith("fuse"):
                names.add(module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("fuse.")}
    return names


def test_no_room_of_fuse_imports_a_higher_one():
    upward = []
    for path in (ROOT / "fuse").rglob("*.py"):
        own = fuse_rank(".".join(path.relative_to(ROOT).with_suffix("").parts))
        upward += [f"{path.relative_to(ROOT)} -> {m}" for m in fuse_imports(path) if fuse_rank(m) > own]
    assert not upward, "\n".join(sorted(upward))
