"""The docs say what the declarations say, and every link in them leads somewhere.

The generated parts (docs/commands.md's command tables, docs/configuration.md's variables,
.env.example) come from scripts/docs.py; these tests call the same functions.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from commands.registry import PROVIDERS
from scripts import docs

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "SPEC.md"
STALE = "is stale: run `.venv/bin/python scripts/docs.py`"


def pages() -> list[Path]:
    """Every page of prose: the README, docs/ and the benchmarks' README."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]


def generated_part(path: Path, begin: str, end: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(begin)
    return text[start : text.index(end, start) + len(end)]


# --- generated parts ---------------------------------------------------------------------------


def test_command_reference_is_current() -> None:
    assert generated_part(docs.COMMANDS_DOC, docs.BEGIN, docs.END) == docs.reference(), (
        f"docs/commands.md {STALE}"
    )


def test_command_reference_has_every_declared_command() -> None:
    reference = docs.reference()
    for provider in PROVIDERS:
        assert f"### `/{provider.name}`" in reference
        for command in provider.commands:
            assert f"| `/{command.path}" in reference, command.path


def test_configuration_reference_is_current() -> None:
    found = generated_part(docs.CONFIGURATION_DOC, docs.CONFIG_BEGIN, docs.CONFIG_END)
    assert found == docs.configuration_reference(), f"docs/configuration.md {STALE}"


def test_env_example_is_current() -> None:
    assert docs.ENV_EXAMPLE.read_text(encoding="utf-8") == docs.env_example(), (
        f".env.example {STALE}"
    )


def test_every_generated_file_is_current() -> None:
    """What `scripts/docs.py --check` checks, so CI and the script agree."""
    assert docs.stale() == []
    assert docs.main(["--check"]) == 0


def test_env_example_names_every_declared_variable_once() -> None:
    example = docs.ENV_EXAMPLE.read_text(encoding="utf-8")
    named = re.findall(r"^# ([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE)
    declared = docs.variable_names()
    assert len(named) == len(set(named))
    assert set(named) == set(declared)
    # the bot's own and every provider's, so the set is really generated from all of them
    for provider in PROVIDERS:
        model = docs.settings_model(provider)
        assert {docs.env_name(model, n, f) for n, f in model.model_fields.items()} <= set(named)


def test_configuration_page_names_every_declared_variable() -> None:
    page = docs.CONFIGURATION_DOC.read_text(encoding="utf-8")
    for name in docs.variable_names():
        assert f"| `{name}` |" in page, name


def test_every_variable_declares_its_meaning() -> None:
    """Meanings come from the declarations alone: every field of the bot's settings and of every
    provider's carries `Field(description=…)`, and the docs show it word for word."""
    undescribed = [
        docs.env_name(model, name, field)
        for _, model in docs.models()
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert undescribed == [], "declare these with Field(description=…)"
    for _, model in docs.models():
        for name, field in model.model_fields.items():
            assert docs.variable(model, name, field).meaning == field.description
    assert not hasattr(docs, "UNDECLARED"), "meanings live in the declarations only"


def test_a_variable_without_a_meaning_is_refused() -> None:
    from pydantic import Field
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class NewProviderSettings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="NEWPROVIDER_")

        token: str | None = None
        blank: str = Field("", description="  ")
        region: str = Field("eu", description="which region", examples=["us"])

    fields = NewProviderSettings.model_fields
    region = docs.variable(NewProviderSettings, "region", fields["region"])
    assert (region.meaning, region.default, region.value) == ("which region", "`eu`", "us")
    for name in ("token", "blank"):
        with pytest.raises(LookupError, match=f"NEWPROVIDER_{name.upper()}"):
            docs.variable(NewProviderSettings, name, fields[name])


def test_the_script_stops_naming_a_variable_without_a_meaning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A provider that declares a variable without a description cannot be documented: the
    script (and so `--check` in CI) fails with the variable's name, not a generic error."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class NewProviderSettings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="NEWPROVIDER_")

        token: str | None = None

    monkeypatch.setattr(docs, "models", lambda: [("New provider", NewProviderSettings)])
    for argv in (["--check"], []):
        assert docs.main(argv) == 1
        assert "NEWPROVIDER_TOKEN" in capsys.readouterr().err


def test_every_provider_reads_variables_of_its_own_prefix() -> None:
    """The configuration page groups variables by provider, and tests/conftest.py clears them
    by these prefixes: each provider's are `<NAME>_…`, and no two providers share one."""
    prefixes = docs.env_prefixes()
    assert len(set(prefixes)) == len(prefixes)
    for provider, prefix in zip(PROVIDERS, prefixes, strict=True):
        assert prefix == f"{provider.name.upper()}_", provider.name
        model = docs.settings_model(provider)
        for name, field in model.model_fields.items():
            assert docs.env_name(model, name, field).startswith(prefix), name


def test_the_specs_configuration_names_are_declared() -> None:
    """SPEC.md §2 names the variables tests outside the project set: none may go missing."""
    if not SPEC.exists():
        pytest.skip("SPEC.md is not beside the repository")
    section = SPEC.read_text(encoding="utf-8").split("## 2.", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {n for row in rows for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert len(named) > 20
    assert named <= set(docs.variable_names())


# --- what the generated parts cannot say --------------------------------------------------------


def test_the_approvals_page_shows_the_example_policy_as_it_is() -> None:
    example = (ROOT / "examples" / "policy.yml").read_text(encoding="utf-8")
    shown = "rules:" + example.split("rules:", 1)[1]
    assert f"```yaml\n{shown}```" in (ROOT / "docs" / "approvals.md").read_text(encoding="utf-8")


def test_the_readme_is_a_front_page() -> None:
    """Short: what it is, the two commands, a tour, and a link to every page of docs/."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "\n./scripts/console   # " in readme
    assert "\n./scripts/test      # " in readme
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name}" in readme, page.name
    assert "(bench/README.md" in readme


# --- links ---------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _unfenced(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _prose(text: str) -> str:
    """`text` without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in {"L", "N"})
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _unfenced(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links_of(text: str) -> list[str]:
    """The relative link targets of markdown `text` (not http:, mailto: and the like)."""
    targets = LINK.findall(_prose(text))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def links(path: Path) -> list[str]:
    return links_of(path.read_text(encoding="utf-8"))


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for page in pages():
        assert page.exists(), page
        for target in links(page):
            file, _, anchor = target.partition("#")
            where = (page.parent / file).resolve() if file else page
            if not where.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and (where.suffix != ".md" or anchor not in anchors(where)):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_link_checker_sees_links_and_headings() -> None:
    assert slug("`/billing` commands, and *more*") == "billing-commands-and-more"
    assert slug("Policies, unknown outcomes and scheduled posts") == (
        "policies-unknown-outcomes-and-scheduled-posts"
    )
    assert "approval-policies" in anchors(ROOT / "docs" / "approvals.md")
    assert "docs/tutorial.md" in links(ROOT / "README.md")
    assert links_of("see [a](b.md#c) and `[d](e)` and [f](https://g)") == ["b.md#c"]
