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
