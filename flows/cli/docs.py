"""`citeops docs`: the reference parts of the docs, generated from the code.

``docs/cli.md`` gets the command reference from the Typer app (its click command tree),
``docs/configuration.md`` the settings reference from the settings' JSON schema (field,
type, default, environment variable, description) and the benchmark settings'. Only the
region between a ``<!-- BEGIN GENERATED: name -->`` / ``<!-- END GENERATED: name -->``
pair of markers is written; the hand-written prose around it stays. ``citeops docs``
checks that the committed docs match (a test runs the same check); ``--write`` rewrites
the regions.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from citeops.tasks.errors import CiteopsError

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
FIX_COMMAND = ".venv/bin/citeops docs --write"


class DocsOutOfDate(CiteopsError):
    """A generated region of the docs differs from what the code generates now."""


@dataclass(frozen=True)
class Region:
    """A generated part of one doc: which file, which marker name, how it is made (from
    the command-line app, which the CLI reference needs)."""

    doc: str
    name: str
    render: Callable[[typer.Typer], str]

    @property
    def begin(self) -> str:
        return f"<!-- BEGIN GENERATED: {self.name} (citeops docs --write; do not edit) -->"

    @property
    def end(self) -> str:
        return f"<!-- END GENERATED: {self.name} -->"


# ---- the CLI reference -----------------------------------------------------------------


def cli_reference(app: typer.Typer) -> str:
    """Markdown for every command of ``app`` (the ``citeops`` app): usage, help, and a
    table of its options (type, default, help), in the app's own order."""
    root = typer.main.get_command(app)
    top = root.context_class(root, info_name="citeops")
    return "\n\n".join(_command_section(ctx) for ctx in _walk(root, top))


def _walk(command: Any, ctx: Any) -> Iterator[Any]:
    """The contexts of the leaf commands under ``command``, depth first. Typer builds the
    tree with its own copy of click, so groups are told apart by what they do."""
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, sub.context_class(sub, parent=ctx, info_name=name))
    else:
        yield ctx


def _command_section(ctx: Any) -> str:
    command = ctx.command
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"### `{ctx.command_path}`", "", "```", usage, "```", ""]
    lines.append(_flat(command.help or ""))
    rows = [_option_row(param) for param in command.params if _shown(param)]
    if rows:
        lines += ["", "| option | type | default | meaning |", "| --- | --- | --- | --- |"]
        lines += rows
    return "\n".join(lines)


def _shown(param: Any) -> bool:
    return not getattr(param, "hidden", False) and param.name != "help"


def _option_row(param: Any) -> str:
    names = list(param.opts) + list(param.secondary_opts)
    if param.param_type_name == "argument":
        names = [param.human_readable_name]
    flag = getattr(param, "is_flag", False)
    kind = "flag" if flag else _option_type(param)
    default = "required" if param.required else _default(param.default)
    help_text = getattr(param, "help", None) or ""
    cells = [" / ".join(f"`{n}`" for n in names), kind, default, _flat(help_text)]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _option_type(param: Any) -> str:
    """``int ≥ 1``, ``text``, ``path``, ``a | b`` (an enum's values), from the annotation
    Typer recorded for the option and its ``min`` / ``max``."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(str(member.value) for member in annotation)
    names = {int: "int", float: "float", str: "text", Path: "path", bool: "bool"}
    name = names.get(annotation, getattr(annotation, "__name__", "text"))
    bounds = [
        f"{sign} {value}"
        for sign, value in (("≥", getattr(param, "min", None)), ("≤", getattr(param, "max", None)))
        if value is not None
    ]
    return " ".join([name, *bounds])


def _default(value: Any) -> str:
    if value is None or value == "" or callable(value):
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


# ---- the settings reference ------------------------------------------------------------


def settings_reference() -> str:
    """Markdown for every setting of the product: one table per section (top-level fields
    first), from :class:`~citeops.configs.settings.Settings`' JSON schema."""
    from citeops.configs.base import ENV_PREFIX
    from citeops.configs.settings import Settings

    schema = Settings.model_json_schema()
    return _schema_tables(schema, ENV_PREFIX, "")


def bench_settings_reference() -> str:
    """The benchmark settings' table (``benchmarks/settings.py``, ``CITEOPS_BENCH__*``)."""
    from citeops.benchmarks.settings import SECTION, BenchSettings
    from citeops.configs.base import ENV_PREFIX

    schema = BenchSettings.model_json_schema()
    rows = _rows(schema, schema["properties"], f"{ENV_PREFIX}{SECTION.upper()}__", SECTION)
    return "\n".join(_table(rows))


def _schema_tables(schema: dict[str, Any], prefix: str, path: str) -> str:
    """The top level's plain fields, then one ``###`` part per section (nested sections
    get their own part, e.g. ``model.evidence_selection``)."""
    defs = schema.get("$defs", {})
    plain, sections = {}, {}
    for name, prop in schema["properties"].items():
        ref = _section_ref(prop)
        (sections if ref else plain)[name] = prop
    parts = []
    if plain:
        parts.append("\n".join(_table(_rows(schema, plain, prefix, path))))
    for name, prop in sections.items():
        section = defs[_section_ref(prop)]
        dotted = f"{path}{name}"
        inner = {**section, "$defs": defs}
        intro = _first_paragraph(section.get("description", ""))
        body = _schema_tables(inner, f"{prefix}{name.upper()}__", f"{dotted}.")
        parts.append(f"### `{dotted}`\n\n{intro}\n\n{body}".replace("\n\n\n", "\n\n"))
    return "\n\n".join(parts)


def _section_ref(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _rows(schema: dict[str, Any], props: dict[str, Any], prefix: str, path: str) -> list[list[str]]:
    defs = schema.get("$defs", {})
    return [
        [
            f"`{path}{'.' if path and not path.endswith('.') else ''}{name}`",
            _json_type(prop, defs),
            _json_default(prop),
            f"`{prefix}{name.upper()}`",
            _flat(prop.get("description", "")),
        ]
        for name, prop in props.items()
    ]


def _table(rows: list[list[str]]) -> list[str]:
    head = ["| setting | type | default | environment variable | meaning |"]
    head.append("| --- | --- | --- | --- | --- |")
    return head + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _json_type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short reading of a JSON-schema type: ``int ≥ 1``, ``a | b``, ``list of str``,
    ``map of BatchingSettings``, ``float or none``, ``secret``."""
    if "anyOf" in prop:
        kinds = [_json_type(p, defs) for p in prop["anyOf"]]
        return " or ".join(k for k in kinds if k != "none") + (
            " or none" if "none" in kinds else ""
        )
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return str(prop["const"])
    if prop.get("format") == "password":
        return "secret"
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items") or {}
        return f"list of {_json_type(items, defs)}" if items else "list"
    if kind == "object":
        values = prop.get("additionalProperties")
        return f"map of {_json_type(values, defs)}" if isinstance(values, dict) else "map"
    if prop.get("format") == "path":
        return "path"
    names = {
        "integer": "int",
        "number": "float",
        "string": "str",
        "boolean": "bool",
        "null": "none",
    }
    name = names.get(kind, kind or "any")
    return " ".join([name, *_bounds(prop)])


def _bounds(prop: dict[str, Any]) -> list[str]:
    signs = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
    }
    return [f"{sign} {prop[key]}" for key, sign in signs.items() if key in prop]


def _json_default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return "(see meaning)"
    value = prop["default"]
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list) and not value:
        return "empty"
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`"


# ---- shared ----------------------------------------------------------------------------


def _flat(text: str) -> str:
    """Docstring text as one Markdown paragraph (click's ``\\b`` markers dropped)."""
    return " ".join(text.replace("\b", "").split())


def _first_paragraph(text: str) -> str:
    return _flat(text.strip().split("\n\n")[0])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


REGIONS = (
    Region("cli.md", "cli-reference", cli_reference),
    Region("configuration.md", "settings-reference", lambda _app: settings_reference()),
    Region("configuration.md", "bench-settings-reference", lambda _app: bench_settings_reference()),
)


def regenerate(text: str, region: Region, app: typer.Typer) -> str:
    """``text`` with ``region``'s generated part replaced by what the code makes now.

    Raises:
        DocsOutOfDate: the doc lacks the region's markers.
    """
    start, stop = text.find(region.begin), text.find(region.end)
    if start < 0 or stop < start:
        raise DocsOutOfDate(
            f"docs/{region.doc} has no generated region {region.name!r}: put the markers "
            f"{region.begin} and {region.end} where it belongs, then run {FIX_COMMAND}"
        )
    body = region.render(app).strip()
    return f"{text[: start + len(region.begin)]}\n\n{body}\n\n{text[stop:]}"


def stale_docs(app: typer.Typer, docs_dir: Path = DOCS_DIR, write: bool = False) -> list[str]:
    """The docs whose generated regions (the CLI reference from ``app``) differ from the
    code's, rewritten when ``write``. Returns their names, e.g. ``["cli.md"]``."""
    stale = []
    for doc in dict.fromkeys(r.doc for r in REGIONS):
        path = docs_dir / doc
        old = path.read_text(encoding="utf-8")
        new = old
        for region in (r for r in REGIONS if r.doc == doc):
            new = regenerate(new, region, app)
        if new != old:
            stale.append(doc)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


def register(app: typer.Typer) -> None:
    """Add ``citeops docs`` to ``app``; its CLI reference documents ``app`` itself."""

    @app.command("docs")
    def docs_command(
        write: bool = typer.Option(
            False, "--write/--check", help="Rewrite the generated regions (default: check)."
        ),
        docs_dir: str | None = typer.Option(
            None, help="Folder holding cli.md and configuration.md (default: the repository's)."
        ),
    ) -> None:
        """Check (or with --write regenerate) the CLI and settings references in the docs,
        generated from the Typer app and the settings' schema."""
        stale = stale_docs(app, Path(docs_dir) if docs_dir else DOCS_DIR, write=write)
        if write:
            typer.echo(f"rewrote {', '.join(stale)}" if stale else "docs already up to date")
        elif stale:
            raise DocsOutOfDate(
                f"generated docs out of date: {', '.join(f'docs/{d}' for d in stale)}; "
                f"run {FIX_COMMAND}"
            )
        else:
            typer.echo("docs up to date")
