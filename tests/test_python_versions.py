"""The package, tools, demo, configs and tests stay runnable on Python 3.8:

* vermin's static check (syntax, library members, modules and keyword
  arguments newer than 3.8, e.g. ``zip(strict=)``, ``str.removeprefix``,
  ``match``, parenthesized context managers);
* builtin generics (``list[int]``, 3.9) and ``X | Y`` unions (3.10) where
  Python evaluates them: vermin leaves annotations alone (PEP 563) and does
  not look at runtime aliases such as ``Polygon = list[float]``.

The CI runs a single Python; these are the checks for the older ones.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ('eca_mmdet', 'tools', 'demo', 'configs', 'tests')
TARGET = '3.8'
# vermin reads ``rle['counts'].decode()`` (bytes) as Python 2's str.decode;
# Python 3 has no str.decode, so excluding the name hides nothing.
VERMIN_ARGS = (f'-t={TARGET}-', '--no-tips', '--violations')
VERMIN_ARGS += ('--exclude', 'str.decode')
VERMIN = 'import sys; from vermin.main import main; sys.exit(main())'

GENERICS_39 = {'list', 'dict', 'tuple', 'set', 'frozenset', 'type'}


def _run_vermin(*paths):
    pytest.importorskip(
        'vermin',
        reason='vermin is not installed (pip install vermin, or the '
        "project's tests extra)",
    )
    return subprocess.run(
        [sys.executable, '-c', VERMIN, *VERMIN_ARGS, *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_vermin_finds_nothing_newer_than_3_8():
    proc = _run_vermin(*FOLDERS)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert 'Target versions not met' not in out, out
    assert f'Minimum required versions: {TARGET}' in out, out


def test_vermin_check_fails_on_a_violation(tmp_path):
    """The same call on code that needs 3.10 fails (so the check can)."""
    bad = tmp_path / 'bad.py'
    bad.write_text('pairs = list(zip([1], [2], strict=True))\n')
    proc = _run_vermin(bad)
    assert proc.returncode != 0
    assert 'zip(strict)' in proc.stdout


def _annotation_roots(tree):
    """``(annotation, evaluated)`` for every annotation in ``tree``: Python
    evaluates those of function signatures and of module/class variables at
    definition time, unless ``from __future__ import annotations``; never
    those of local variables."""
    postponed = any(
        isinstance(n, ast.ImportFrom)
        and n.module == '__future__'
        and any(a.name == 'annotations' for a in n.names)
        for n in tree.body
    )
    local = set()
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = args.posonlyargs + args.args + args.kwonlyargs
            every += [a for a in (args.vararg, args.kwarg) if a]
            roots += [(a.annotation, not postponed) for a in every]
            roots.append((node.returns, not postponed))
            inner = [
                n.annotation
                for stmt in node.body
                for n in ast.walk(stmt)
                if isinstance(n, ast.AnnAssign)
            ]
            roots += [(a, False) for a in inner]
            local |= {id(a) for a in inner}
        elif (
            isinstance(node, ast.AnnAssign)
            and id(node.annotation) not in local
        ):
            roots.append((node.annotation, not postponed))
    return [(root, evaluated) for root, evaluated in roots if root]


def evaluated_new_generics(source):
    """``(line, text)`` of every ``list[...]``-style builtin generic that
    Python 3.8 would evaluate (outside annotations, or in evaluated ones)
    and every ``X | Y`` union in an evaluated annotation."""
    tree = ast.parse(source)
    skipped, unions_at = set(), set()
    for root, evaluated in _annotation_roots(tree):
        ids = {id(n) for n in ast.walk(root)}
        (unions_at if evaluated else skipped).update(ids)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        generic = (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in GENERICS_39
        )
        union = (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and id(node) in unions_at
        )
        if generic or union:
            found.append((node.lineno, ast.get_source_segment(source, node)))
    return sorted(found)


def _python_files():
    for folder in FOLDERS:
        yield from sorted((ROOT / folder).rglob('*.py'))


def test_no_evaluated_builtin_generics_or_unions():
    problems = [
        f'{path.relative_to(ROOT)}:{line}: {text}'
        for path in _python_files()
        for line, text in evaluated_new_generics(path.read_text('utf-8'))
    ]
    assert not problems, (
        'needs Python >= 3.9/3.10 where it is evaluated (use typing.List, '
        'Dict, Optional, Union):\n' + '\n'.join(problems)
    )


def test_generic_check_finds_what_3_8_evaluates():
    flagged = textwrap.dedent(
        """
        Polygon = list[float]
        def f(x: dict[str, int]) -> None: ...
        def g(y: 'int', z: int | None = None): ...
        class C:
            items: tuple[int, ...] = ()
        """
    )
    assert [line for line, _ in evaluated_new_generics(flagged)] == [
        2,
        3,
        4,
        6,
    ]
    fine = textwrap.dedent(
        """
        from typing import List
        Polygon = List[float]
        def f(x: 'list[int]') -> List[int]:
            local: list[int] = []
            return local
        flags = 1 | 2
        """
    )
    assert evaluated_new_generics(fine) == []
    postponed = 'from __future__ import annotations\n' + textwrap.dedent(
        """
        def f(x: list[int], y: int | None) -> dict[str, int]: ...
        class C:
            items: tuple[int, ...] = ()
        Alias = list[int]
        """
    )
    assert [line for line, _ in evaluated_new_generics(postponed)] == [6]
