"""Mutation testing of the at-most-once, redaction and audit chain logic: run mutmut, judge.

    scripts/mutation [--max-children N] [--report-only] [FILE ...]

`[tool.mutmut]` in pyproject.toml holds mutmut's settings (and, for running mutmut by hand,
every file and test involved); `[tool.billing_bot.mutation]` says which mutants to test
(`strict` and `report` selectors) and, per mutated file, the only tests to run them against.
Each file is run on its own, in `mutants/<file>/` (mutmut's working copy, left behind: `cd`
there for `mutmut show NAME` or `mutmut browse`), so a mutant of the grammar never waits for
the approval tests. Naming FILEs runs only those. `--report-only` judges the last run again
(after editing the equivalents). Set TEST_DATABASE_URL (as .ci/run does): the files listed in
`postgresql` hold lines (locks, upserts) that run only there, so their tests run on PostgreSQL as
well as SQLite; every other file's tests run on SQLite alone, which is several times faster.

Prints, per file, how many mutants were killed, survived, timed out or had no test, then every
survivor as the line it changed. Exits 1 when a mutant under a `strict` selector survived (or
no test reached it) and scripts/mutation_equivalents.toml does not list it as equivalent; 2 when
mutmut itself could not run.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.toml"
WORK = ROOT / "mutants"
# mutmut's name for a method: <module>.xǁ<Class>ǁ<method>__mutmut_<n>; a function: x_<name>.
SEPARATOR = "ǁ"
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass(frozen=True)
class Selector:
    """`file` or `file:Qualified.name` (fnmatch pattern) from [tool.billing_bot.mutation]."""

    path: str
    pattern: str
    strict: bool

    @classmethod
    def parse(cls, text: str, *, strict: bool) -> Selector:
        path, _, pattern = text.partition(":")
        return cls(path, pattern or "*", strict)

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    def glob(self) -> str:
        """The mutmut name pattern for this selector's mutants."""
        if self.pattern == "*":
            return f"{self.module}.*"
        owner, _, name = self.pattern.rpartition(".")
        key = f"x{SEPARATOR}{owner}{SEPARATOR}{name}" if owner else f"x_{name}"
        return f"{self.module}.{key}__mutmut_*"

    def covers(self, mutant: Mutant) -> bool:
        return mutant.path == self.path and fnmatch.fnmatchcase(mutant.function, self.pattern)


@dataclass(frozen=True)
class Mutant:
    name: str
    status: str

    @property
    def _parts(self) -> tuple[str, str]:
        head = self.name.partition("__mutmut_")[0]
        module, _, key = head.rpartition(".")
        return module, key

    @property
    def path(self) -> str:
        return self._parts[0].replace(".", "/") + ".py"

    @property
    def function(self) -> str:
        key = self._parts[1]
        if key.startswith("x" + SEPARATOR):
            return ".".join(key[1:].strip(SEPARATOR).split(SEPARATOR))
        return key.removeprefix("x_")


@dataclass(frozen=True)
class Change:
    before: str
    after: str

    def __str__(self) -> str:
        return f"`{self.before or '∅'}` → `{self.after or '∅'}`"


@dataclass(frozen=True)
class Equivalent:
    function: str  # file:Qualified.name
    change: Change
    reason: str


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="only the selectors of these files")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report-only", action="store_true", help="judge the last run again")
    options = parser.parse_args()
    os.chdir(ROOT)

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    selectors = _selectors(config, options.files)
    equivalents = _equivalents()
    problems = _check_config(config, selectors, equivalents)
    if problems:
        say("\n".join(problems), err=True)
        return 2

    mutmut = str(Path(sys.executable).with_name("mutmut"))
    files = list(dict.fromkeys(s.path for s in selectors))
    if not options.report_only:
        on_postgresql = set(config["billing_bot"]["mutation"].get("postgresql", []))
        if on_postgresql & set(files) and not os.environ.get("TEST_DATABASE_URL"):
            say(
                "TEST_DATABASE_URL is not set: the tests run on SQLite only, so mutants of "
                "PostgreSQL-only lines (locks, upserts) survive. Set it as .ci/run does.",
                err=True,
            )
        for path in files:
            shutil.rmtree(_workdir(path), ignore_errors=True)
            mine = [s for s in selectors if s.path == path]
            env = dict(os.environ)
            if path not in on_postgresql:
                env.pop("TEST_DATABASE_URL", None)
            tests = _tests_for(config, path)
            failed = _run(mutmut, path, mine, tests, options.max_children, env)
            if failed:
                return failed

    mutants = []
    for path in files:
        if not (_workdir(path) / "mutants").exists():
            say(f"{path} has no results in {_rel(_workdir(path))}: run it first", err=True)
            return 2
        listed = subprocess.run(
            [mutmut, "results", "--all", "true"],
            capture_output=True,
            text=True,
            check=True,
            cwd=_workdir(path),
        ).stdout
        mutants += [m for m in _parse_results(listed) if any(s.covers(m) for s in selectors)]
    return _report(mutants, selectors, equivalents, mutmut)


def _workdir(path: str) -> Path:
    return WORK / path.removesuffix(".py").replace("/", "-")


def _tests_for(config: dict[str, Any], path: str) -> list[str]:
    tests = config["billing_bot"]["mutation"].get("tests", {}).get(path)
    return list(tests or config["mutmut"]["pytest_add_cli_args_test_selection"])


def _run(
    mutmut: str,
    path: str,
    selectors: list[Selector],
    tests: list[str],
    workers: int,
    env: dict[str, str],
) -> int:
    """mutmut over one file, in a directory of its own whose pyproject.toml names only that
    file and its tests (mutmut reads its settings from the working directory)."""
    work = _workdir(path)
    work.mkdir(parents=True)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    for name in ["bot", "commands", "tests", *config.get("also_copy", [])]:
        (work / name).symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
    (work / "pyproject.toml").write_text(_pyproject_for(path, tests))
    log = work / "mutmut.log"
    globs = sorted({s.glob() for s in selectors})
    databases = "SQLite and PostgreSQL" if env.get("TEST_DATABASE_URL") else "SQLite"
    say(
        f"{path}: mutmut against {len(tests)} test files on {databases}, {workers} workers; "
        f"log in {_rel(log)}"
    )
    with log.open("w") as output:
        ran = subprocess.run(
            [mutmut, "run", "--max-children", str(workers), *globs],
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
            cwd=work,
            env=env,
        )
    if ran.returncode != 0:
        say(log.read_text()[-3000:], err=True)
        say(f"mutmut run failed (exit {ran.returncode}); see {_rel(log)}", err=True)
        return 2
    return 0


def _pyproject_for(path: str, tests: list[str]) -> str:
    """pyproject.toml with its [tool.mutmut] table narrowed to one file and its tests."""
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    start = lines.index("[tool.mutmut]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    table = tomllib.loads("\n".join(lines[start:end]))["tool"]["mutmut"]
    table["only_mutate"] = [path]
    table["pytest_add_cli_args_test_selection"] = tests
    narrowed = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return "\n".join([*lines[:start], *narrowed, *lines[end:]]) + "\n"


def _selectors(config: dict[str, Any], files: list[str]) -> list[Selector]:
    mutation = config.get("billing_bot", {}).get("mutation", {})
    selectors = [Selector.parse(t, strict=True) for t in mutation.get("strict", [])]
    selectors += [Selector.parse(t, strict=False) for t in mutation.get("report", [])]
    if files:
        wanted = {Path(f).as_posix() for f in files}
        selectors = [s for s in selectors if s.path in wanted]
    return selectors


def _equivalents() -> list[Equivalent]:
    data = tomllib.loads(EQUIVALENTS.read_text()) if EQUIVALENTS.exists() else {}
    return [
        Equivalent(e["function"], Change(e["before"], e["after"]), e["reason"])
        for e in data.get("equivalent", [])
    ]


def _check_config(
    config: dict[str, Any], selectors: list[Selector], equivalents: list[Equivalent]
) -> list[str]:
    """Selectors that name no file mutmut mutates or no function in the file (code moved),
    tests that are gone, equivalents without a reason."""
    problems = []
    mutated = config["mutmut"].get("only_mutate", [])
    if not selectors:
        problems.append("no selector in [tool.billing_bot.mutation] matches the files given")
    for selector in selectors:
        if selector.path not in mutated:
            problems.append(f"{selector.path} is not in [tool.mutmut] only_mutate")
        elif not any(
            fnmatch.fnmatchcase(f, selector.pattern) for f in _functions(ROOT / selector.path)
        ):
            problems.append(
                f"{selector.path} has no function matching {selector.pattern!r}: "
                "update [tool.billing_bot.mutation] in pyproject.toml"
            )
    for path in dict.fromkeys(s.path for s in selectors):
        for test in _tests_for(config, path):
            if not (ROOT / test.partition("::")[0]).exists():
                problems.append(f"{test}, a test for {path} in pyproject.toml, is gone")
    for equivalent in equivalents:
        if not equivalent.reason.strip():
            problems.append(
                f"{_rel(EQUIVALENTS)}: {equivalent.function} {equivalent.change} has no reason"
            )
    return problems


def _functions(path: Path) -> list[str]:
    """Top-level functions and methods, as mutmut mutates them (`Class.method`, `function`)."""
    if not path.exists():
        return []
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef):
            names += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
    return names


def _parse_results(text: str) -> list[Mutant]:
    mutants = []
    for line in text.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep and "__mutmut_" in name:
            mutants.append(Mutant(name, status.strip()))
    return mutants


def _change(mutmut: str, mutant: Mutant) -> Change:
    """The lines a mutant changes, from `mutmut show` (whitespace-trimmed, joined by ⏎)."""
    diff = subprocess.run(
        [mutmut, "show", mutant.name],
        capture_output=True,
        text=True,
        check=True,
        cwd=_workdir(mutant.path),
    ).stdout.splitlines()
    removed = [ln[1:].strip() for ln in diff if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:].strip() for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
    return Change(" ⏎ ".join(removed), " ⏎ ".join(added))


def _report(
    mutants: list[Mutant], selectors: list[Selector], equivalents: list[Equivalent], mutmut: str
) -> int:
    columns = ("killed", "survived", "equivalent", "timeout", "no tests", "other")
    counts: dict[str, Counter[str]] = {s.path: Counter() for s in selectors}
    failing: list[tuple[Mutant, Change]] = []
    noted: list[tuple[Mutant, Change, str]] = []
    used: set[Equivalent] = set()
    for mutant in mutants:
        tally = counts[mutant.path]
        status = mutant.status
        if status in {"killed", "timeout", "no tests", "survived"}:
            tally[status] += 1
        elif status in DETECTED:
            tally["killed"] += 1
        else:
            tally["other"] += 1
        if status in DETECTED:
            continue
        change = _change(mutmut, mutant)
        function = f"{mutant.path}:{mutant.function}"
        match = next(
            (e for e in equivalents if e.function == function and e.change == change), None
        )
        if match is not None and status == "survived":
            tally["equivalent"] += 1
            used.add(match)
            continue
        strict = any(s.strict and s.covers(mutant) for s in selectors)
        if strict:
            failing.append((mutant, change))
        else:
            noted.append((mutant, change, status))

    width = max(len(p) for p in counts) + 2
    say(f"{'file':<{width}}" + "".join(f"{c:>12}" for c in columns))
    for path, tally in counts.items():
        say(f"{path:<{width}}" + "".join(f"{tally[c]:>12}" for c in columns))
    partial = sorted({s.path for s in selectors if s.pattern != "*"})
    for path in partial:
        names = ", ".join(s.pattern for s in selectors if s.path == path)
        say(f"  ({path}: only {names})")

    for mutant, change, status in noted:
        say(f"{status} (reported only): {mutant.name} {mutant.function}: {change}")
    for equivalent in equivalents:
        if equivalent not in used and equivalent.function.partition(":")[0] in counts:
            say(f"note: equivalent no longer seen: {equivalent.function} {equivalent.change}")
    if failing:
        say(f"\n{len(failing)} mutants under a strict selector were not killed:")
        for mutant, change in failing:
            say(f"  {mutant.status}: {mutant.name} ({mutant.function}): {change}")
        say(f"Kill them with a test, or list a true equivalent in {_rel(EQUIVALENTS)}.")
        return 1
    say("\nNo surviving mutant under a strict selector.")
    return 0


def say(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


if __name__ == "__main__":
    sys.exit(main())
