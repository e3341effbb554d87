"""A small reader of the project's Dockerfile, for tests that check it or replay it outside Docker.

It understands the subset of Dockerfile syntax the project uses: comments, line continuations,
``FROM ... AS name``, ``ARG`` / ``ENV`` with ``KEY=VALUE`` pairs, and exec-form (JSON) ``CMD`` and
``HEALTHCHECK ... CMD``; anything else is kept as raw text in :attr:`Instruction.value`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-case, e.g. "RUN"
    value: str  # everything after the keyword, continuations joined
    line: int  # 1-based line of the keyword in the Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def key_values(self, keyword: str) -> dict[str, str]:
        """Merged ``KEY=VALUE`` pairs of every ARG or ENV instruction (in order)."""
        out: dict[str, str] = {}
        for ins in self.of(keyword):
            for token in shlex.split(ins.value):
                key, sep, value = token.partition("=")
                if not sep and keyword == "ENV":
                    raise ValueError(f"Dockerfile line {ins.line}: write ENV as KEY=VALUE")
                out[key] = value
        return out


def instructions(text: str) -> list[Instruction]:
    result: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped, as Docker does
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        keyword, _, value = " ".join(buf).partition(" ")
        result.append(Instruction(keyword.upper(), value.strip(), start))
        buf = []
    if buf:
        raise ValueError("Dockerfile ends inside a continued instruction")
    return result


def stages(text: str | None = None) -> list[Stage]:
    text = DOCKERFILE.read_text() if text is None else text
    out: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", ins.value, flags=re.IGNORECASE)
            if m is None:
                raise ValueError(f"Dockerfile line {ins.line}: cannot read FROM {ins.value!r}")
            out.append(Stage(base=m.group(1), name=m.group(2)))
        elif not out:
            if ins.keyword != "ARG":
                raise ValueError(f"Dockerfile line {ins.line}: {ins.keyword} before FROM")
        else:
            out[-1].instructions.append(ins)
    return out


def exec_form(value: str) -> list[str]:
    """The JSON array of an exec-form CMD / ENTRYPOINT / HEALTHCHECK CMD."""
    parsed = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
        raise ValueError(f"not an exec-form command: {value!r}")
    return parsed


def healthcheck_command(stage: Stage) -> list[str]:
    (ins,) = stage.of("HEALTHCHECK")
    _, sep, cmd = ins.value.partition("CMD ")
    if not sep:
        raise ValueError(f"Dockerfile line {ins.line}: HEALTHCHECK without CMD")
    return exec_form(cmd)


def healthcheck_options(stage: Stage) -> dict[str, str]:
    (ins,) = stage.of("HEALTHCHECK")
    opts, _, _ = ins.value.partition("CMD ")
    return dict(tok[2:].split("=", 1) for tok in opts.split())


def copy_args(ins: Instruction) -> tuple[dict[str, str], list[str], str]:
    """(--flags, sources, destination) of a COPY instruction."""
    tokens = shlex.split(ins.value)
    flags = {}
    while tokens and tokens[0].startswith("--"):
        key, _, value = tokens.pop(0)[2:].partition("=")
        flags[key] = value
    if len(tokens) < 2:
        raise ValueError(f"Dockerfile line {ins.line}: COPY needs a source and a destination")
    return flags, tokens[:-1], tokens[-1]
