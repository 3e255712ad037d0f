"""The man pages: lint-clean for mandoc and man-db (as lintian runs it), and complete
against the live sources: every subcommand and option of the CLI parser, every config
key with its default, every exit status, every environment variable the code reads.
Their examples are valid configs."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ROOT, cannot_run, sh
from qemu_ifhooks import config as config_module
from qemu_ifhooks.cli import build_parser
from qemu_ifhooks.config import parse_config
from qemu_ifhooks.configfile import DEFAULT_PATH
from qemu_ifhooks.errors import ExitStatus

MAN8 = ROOT / "man" / "qemu-ifhooks.8"
MAN5 = ROOT / "man" / "qemu-ifhooks.toml.5"
PAGES = [MAN8, MAN5]
# How lintian runs man-db over a page (its manpage-has-errors-from-man check).
MAN_ENV = {"LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80"}


def require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        cannot_run(f"needs {tool} (apt-get install {package})")


def render(page: Path) -> str:
    """The page as plain text, 80 columns, as a reader sees it."""
    require("mandoc", "mandoc")
    text = sh("mandoc", "-Tascii", "-Owidth=80", page).stdout
    return re.sub(r".\x08", "", text)  # overstrike bold and underline


def sections(text: str) -> Dict[str, str]:
    """Top-level sections (.SH) by name; subsections (.SS) by title, indented 3."""
    found: Dict[str, List[str]] = {}
    current = None
    for line in text.splitlines()[1:-1]:  # not the header and footer lines
        heading = re.fullmatch(r"([A-Z][A-Z ]*)|   (\S.*)", line)
        if heading:
            current = heading.group(1) or heading.group(2).strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def mentions(text: str, word: str) -> bool:
    """`word` as a whole token (not part of a longer option or name)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def key_items(section: str) -> Dict[str, str]:
    """The .TP items of a config-key section: key -> its tag line ("key = type",
    indented 7) and text."""
    found: Dict[str, List[str]] = {}
    current = None
    for line in section.splitlines():
        tag = re.match(r" {7}(\w+) = ", line)
        if tag:
            current = tag.group(1)
            found[current] = [line]
        elif current is not None:
            found[current].append(line)
    return {key: " ".join(" ".join(lines).split()) for key, lines in found.items()}


# --- lint ----------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_mandoc_lint_is_clean(page):
    require("mandoc", "mandoc")
    done = sh("mandoc", "-Tlint", "-W", "warning", page, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_man_warnings_are_empty(page):
    require("man", "man-db")
    done = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, **MAN_ENV))
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_has_the_usual_sections(page):
    names = sections(render(page))
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"):
        assert name in names, f"{page.name} has no {name} section"


# --- qemu-ifhooks(8) against the CLI ------------------------------------------------

def subcommands(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> List[str]:
    return [flag for action in parser._actions for flag in action.option_strings]


def command_sections(text: str) -> Dict[str, str]:
    """COMMANDS subsections by subcommand: "qemu-ifhooks up [VLAN ...]" -> "up"."""
    out = {}
    for title, body in sections(text).items():
        match = re.match(r"qemu-ifhooks (\S+)", title)
        if match:
            out[match.group(1)] = f"{title}\n{body}"
    return out


def test_every_global_option_is_documented():
    documented = sections(render(MAN8))["OPTIONS"]
    missing = [o for o in options(build_parser()) if not mentions(documented, o)]
    assert not missing, f"options missing from OPTIONS in {MAN8.name}: {missing}"


def test_every_subcommand_has_a_section():
    documented = command_sections(render(MAN8))
    commands = subcommands(build_parser())
    missing = sorted(set(commands) - set(documented))
    assert not missing, f"subcommands missing from COMMANDS in {MAN8.name}: {missing}"


@pytest.mark.parametrize("command", sorted(subcommands(build_parser())))
def test_every_subcommand_option_and_argument_is_documented(command):
    parser = build_parser()
    section = command_sections(render(MAN8)).get(command)
    if section is None:
        pytest.fail(f"no 'qemu-ifhooks {command}' subsection in {MAN8.name}")
    global_options = set(options(parser))
    sub = subcommands(parser)[command]
    missing = []
    for action in sub._actions:
        if action.option_strings:
            missing += [o for o in action.option_strings
                        if o not in global_options and not mentions(section, o)]
        elif action.choices:
            missing += [c for c in action.choices if not mentions(section, str(c))]
        else:
            name = action.metavar or action.dest.upper()
            missing += [] if mentions(section, name) else [name]
    assert not missing, f"'qemu-ifhooks {command}' in {MAN8.name} does not mention {missing}"


def test_exit_status_table_lists_every_status():
    table = sections(render(MAN8))["EXIT STATUS"]
    rows = {int(m.group(1)): m.group(2)
            for m in re.finditer(r"^ {7}(\d+) +(\S+)", table, re.MULTILINE)}
    statuses = ExitStatus.table()
    assert len(statuses) >= 10
    for name, value in statuses.items():
        assert value in rows, f"exit status {value} missing from {MAN8.name}"
        assert rows[value] in (name, f"EX_{name}"), (name, rows[value])
    assert set(rows) == set(statuses.values()), "the table lists unknown statuses"


def test_every_environment_variable_the_code_reads_is_documented():
    package = ROOT / "qemu_ifhooks"
    names = set()
    for source in package.glob("*.py"):
        names |= set(re.findall(r"\bQEMU_IFHOOKS_[A-Z_]+\b", source.read_text()))
    documented = sections(render(MAN8))["ENVIRONMENT"]
    missing = sorted(n for n in names if not mentions(documented, n))
    assert names and not missing, f"ENVIRONMENT in {MAN8.name} lacks {missing}"


def test_files_and_hook_names_are_documented():
    from qemu_ifhooks.install import DEFAULT_DIR
    from qemu_ifhooks.lock import RUN_DIR

    text = sections(render(MAN8))
    for path in (DEFAULT_PATH, "/usr/libexec/qemu-ifhooks/qemu-ifhook", RUN_DIR, f"{DEFAULT_DIR}/ifup-*",
                 "/usr/sbin/qemu-ifhooks", "/lib/systemd/system/qemu-ifhooks.service"):
        assert path in text["FILES"], f"FILES in {MAN8.name} lacks {path}"
    for name in ("ifup-bridge", "ifdown-bridge", "ifup-vlanN", "ifdown-vlanN",
                 "qemu-ifup", "qemu-ifdown"):
        assert name in text["HOOK NAMES"], f"HOOK NAMES in {MAN8.name} lacks {name}"


# --- qemu-ifhooks.toml(5) against the schema -----------------------------------------

def toml_value(value) -> str:
    if value is None:  # unset unless given
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@pytest.mark.parametrize("where,keys", [
    ("SEGMENT KEYS", sorted(config_module.SEGMENT_ONLY)),
    ("INHERITED KEYS", sorted(config_module.INHERITED)),
    ("DEFAULTS KEYS", sorted(config_module.DEFAULTS_ONLY)),
])
def test_every_config_key_is_documented(where, keys):
    documented = key_items(sections(render(MAN5))[where])
    missing = [k for k in keys if k not in documented]
    stale = sorted(set(documented) - set(keys))
    assert not missing, f"{where} in {MAN5.name} lacks {missing}"
    assert not stale, f"{where} in {MAN5.name} documents unknown keys {stale}"
    for key in keys:
        assert "Default: " in documented[key] or "No default" in documented[key], \
            f"{key}: no default stated"


@pytest.mark.parametrize("key", sorted(config_module.INHERITED))
def test_inherited_key_defaults_match_the_schema(key):
    documented = key_items(sections(render(MAN5))["INHERITED KEYS"])[key]
    default = toml_value(config_module.INHERITED[key][1])
    assert f"Default: {default}." in documented, (key, default, documented)


def examples(page: Path) -> List[str]:
    """The .EX blocks of a page that are TOML configs, unescaped."""
    source = page.read_text()
    blocks = re.findall(r"^\.EX\n(.*?)^\.EE$", source, re.MULTILINE | re.DOTALL)
    unescape = {r"\-": "-", r"\e": "\\", r"\(aq": "'", r"\(dq": '"'}
    out = []
    for block in blocks:
        for escape, plain in unescape.items():
            block = block.replace(escape, plain)
        if block.lstrip().startswith("["):
            out.append(block)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_config_examples_are_valid(page):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    found = examples(page)
    assert found, f"{page.name} has no config example"
    for text in found:
        config = parse_config(tomllib.loads(text), f"{page.name} example")
        assert config.segments
