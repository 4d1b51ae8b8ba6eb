"""The shape docs/architecture.md draws, checked on the source itself.

- No import circles among the project's modules (imports inside functions count, and so do
  imports only for type checking: a circle there is still a circle to a reader).
- `commands/` knows nothing of Slack or of `bot/`.
- One composition root: no attribute of a composed service (the fields of `bot.runtime.Runtime`)
  is assigned anywhere, the root included; services are complete when built.
- Nobody reaches through the dispatcher: `dispatcher.<attr>` appears only in dispatch and the
  root (adapters hand requests in through `Intake`).
- No module in `bot/` is over 600 lines.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "commands")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, at run time or for type checking."""
    return imports_in(path.read_text(encoding="utf-8"), known) - {module_name(path)}


def imports_in(source: str, known: set[str]) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for name in names:
            if name in known:
                found.add(name)
            elif name.rsplit(".", 1)[0] in known and name.split(".")[0] in PACKAGES:
                found.add(name.rsplit(".", 1)[0])
    return found


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    files = [p for p in files if "migrations" not in p.parts]
    known = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, known) for p in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_no_import_circles() -> None:
    edges = graph()
    # Package __init__ modules re-export their children; an edge back to them is no circle.
    pruned = {
        node: {t for t in targets if not node.startswith(f"{t}.")}
        for node, targets in edges.items()
    }
    assert cycles(pruned) == []


def test_commands_know_nothing_of_slack_or_the_bot() -> None:
    offenders = []
    for path in (ROOT / "commands").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{module_name(path)} imports {n}"
                for n in names
                if n.split(".")[0] in {"bot", "slack_sdk", "slack_bolt"}
            ]
    assert offenders == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_count_as_edges() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import bot.b\n"
    assert imports_in(source, {"bot.b"}) == {"bot.b"}


# --- one composition root ------------------------------------------------------------------


def composed_services() -> set[str]:
    """The services the composition root builds: the fields of `Runtime`."""
    from bot.runtime import Runtime

    return {f.name for f in dataclasses.fields(Runtime)} - {"background"}


def service_assignments(source: str, services: set[str]) -> list[str]:
    """`x.attr = …` (or `+=`, annotated) where `x` names a composed service, also as
    `self.<service>.attr` or `runtime.<service>.attr`: a service finished after it was built."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            assert isinstance(node, ast.stmt)
            for sub in ast.walk(target):
                if not isinstance(sub, ast.Attribute) or not isinstance(sub.ctx, ast.Store):
                    continue
                base = sub.value
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in services:
                    found.append(f"line {node.lineno}: {ast.unparse(sub)}")
    return found


def test_no_service_is_finished_after_it_was_built() -> None:
    services = composed_services()
    assert {"dispatcher", "flow", "outbox", "scheduler", "executor", "catalog"} <= services
    offenders = [
        f"{path.relative_to(ROOT)} {where}"
        for path in (ROOT / "bot").rglob("*.py")
        for where in service_assignments(path.read_text(encoding="utf-8"), services)
    ]
    assert offenders == []


def test_the_assignment_finder_finds_one() -> None:
    services = {"dispatcher", "outbox", "flow"}
    code = (
        "dispatcher.scheduler = s\n"
        "self.outbox.on_posted = f\n"
        "runtime.flow.policy: int = 1\n"
        "self.ok = 1\n"
        "control.drop = True\n"
    )
    assert service_assignments(code, services) == [
        "line 1: dispatcher.scheduler",
        "line 2: self.outbox.on_posted",
        "line 3: runtime.flow.policy",
    ]


# --- narrow interfaces -------------------------------------------------------------------------

REACH = re.compile(r"\bdispatcher\.[A-Za-z_]+")
ROOT_AND_DISPATCH = {"bot/dispatch.py", "bot/runtime.py"}


def test_nobody_reaches_through_the_dispatcher() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {', '.join(sorted(set(REACH.findall(text))))}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in ROOT_AND_DISPATCH
        and REACH.search(text := path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


MAX_LINES = 600


def test_no_module_in_bot_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "bot").rglob("*.py")
        if "migrations" not in path.parts
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_billing_is_declared_in_one_place() -> None:
    """Every `/billing` command comes from bot/billing.py, except those a provider declares
    next to its own code, which `PROVIDED` lists with their owner."""
    from bot import billing
    from commands.registry import PROVIDERS

    kinds = {name: kind for p in PROVIDERS for name, kind in p.schedule_kinds.items()}
    own = {c.words for c in billing.billing_provider(kinds).commands}
    elsewhere = {
        c.words: provider.name
        for provider in PROVIDERS
        for c in provider.commands
        if c.slash == billing.SLASH
    }
    assert elsewhere == billing.PROVIDED
    assert not own & set(elsewhere)
