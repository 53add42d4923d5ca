"""``check-bundle``: whether a package's shared model is intact, and what its MONAI configs would run.

The shared model (``manifest.json``: schema and registry checks, every file's sha256, the signature) and the
package's structure (plain files, no code, no pickles, no nested archives) decide whether ``medseg predict``
runs it. The MONAI configs are reported as information for those who would ``--trust`` them, because MONAI
configs are code: ``_target_`` instantiates any importable callable, a ``$`` string is evaluated as Python,
``_requires_`` runs things first, ``imports`` imports modules, a ``%`` macro pulls in other files, and
``logging.conf`` is evaluated by :mod:`logging.config`. :func:`check_bundle` lists every one of those and flags
anything that reaches outside MONAI, torch, numpy and medseg. ``$`` expressions are parsed with :mod:`ast`: an
expression passes only when every name it uses is a config reference (``@id``), one of the allowed packages (or
an alias an allowed ``import`` made), a name it binds itself (lambda and comprehension variables), or one of a
few pure builtins (``len``, ``sorted``, ...). Known ways to run arbitrary code *through* the allowed packages
(``monai.utils.optional_import``, ``torch.hub``, ``weights_only=False``, ...) are flagged too.

This is a guard against a bundle doing something other than segmenting images, written to be read by a
person before trusting a bundle; it is not a sandbox.

It also checks the sha256 of ``models/model.pt`` and ``models/model.ts`` against ``metadata.json``
(``model_sha256``) and validates the metadata with ``monai.bundle.verify_metadata`` against a local schema.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import functools
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.sharing.archive import nested_archive_reason, pickle_reason
from medseg.sharing.errors import SharingError

ALLOWED_PACKAGES = frozenset({"monai", "torch", "numpy", "medseg"})
# Builtins without side effects that configs commonly need; everything else (open, eval, getattr, ...) is flagged.
SAFE_BUILTINS = frozenset(
    {
        "abs", "all", "any", "bool", "dict", "enumerate", "float", "int", "isinstance", "len", "list", "max",
        "min", "range", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
        "True", "False", "None",
    }
)  # fmt: skip
# Dotted-name fragments inside the allowed packages that import, download, compile or run arbitrary code.
ESCAPE_HATCHES = (
    "optional_import", "run_cmd", "instantiate", "locate", "import_module", "ComponentLocator", "ConfigParser",
    "download", "hub", "load_library", "cpp_extension", "torch.ops", "torch._C", "_dynamo", "jit.load",
    "pydoc", "subprocess", "system", "exec", "eval",
)  # fmt: skip
# Keyword arguments that turn a safe loader into an unpickler that runs code.
UNSAFE_KEYWORDS = {"weights_only": False, "allow_pickle": True}
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
MODEL_FILES = ("models/model.pt", "models/model.ts")
SHA256_KEY = "model_sha256"
LOCAL_REFS = "__local_refs"
# A config reference as MONAI writes it (``@id``, ``@a::b`` or the older ``@a#b``); MONAI substitutes these
# before evaluating, and so does the analysis.
_REFERENCE = re.compile(r"@\w*(?:(?:::|#)\w*)*")
_LOGGING_STREAMS = frozenset({"sys.stdout", "sys.stderr"})
# The repository's schema when running from a checkout (``bundles/schema/meta_schema.json``).
REPO_SCHEMA = Path(__file__).resolve().parents[2] / "bundles" / "schema" / "meta_schema.json"


@dataclass
class Finding:
    """One thing in a bundle that can run code, and whether it is flagged.

    Args:
        file: path relative to the bundle.
        location: where in the file (config id such as ``network_def::_target_``, or a section).
        kind: ``_target_``, ``expression``, ``_requires_``, ``imports``, ``macro``, ``_mode_``, ``logging``,
            ``python`` or ``file``.
        text: the text found.
        flagged: whether it reaches outside the allowed packages.
        reason: why it is flagged.
    """

    file: str
    location: str
    kind: str
    text: str
    flagged: bool = False
    reason: str = ""


@dataclass
class ModelFileCheck:
    """The sha256 of one model file against the one recorded in the metadata."""

    file: str
    expected: str | None
    actual: str | None

    @property
    def ok(self) -> bool:
        return self.expected is not None and self.expected == self.actual

    def describe(self) -> str:
        if self.actual is None:
            return f"{self.file}: missing (metadata records sha256 {self.expected})"
        if self.expected is None:
            return f"{self.file}: no sha256 recorded in configs/metadata.json ('{SHA256_KEY}'), cannot verify it"
        if not self.ok:
            return f"{self.file}: sha256 {self.actual} does not match {self.expected}: the file was changed"
        return f"{self.file}: sha256 ok"


STRUCTURAL_KINDS = ("file", "python")


@dataclass
class CheckReport:
    """What :func:`check_bundle` found, in two parts.

    * The shared model (``manifest.json``): valid against its schema and the registry, every file's sha256, the
      signature. This, with the package's structure (plain files, no code files, no nested archives) and the
      MONAI metadata, decides ``passed``: what ``medseg predict`` runs without ``--trust``.
    * The MONAI configs: every ``_target_``, ``$`` expression, import, macro and logging handler they would run,
      with those reaching outside MONAI/torch/numpy/medseg flagged. This is information for a person deciding
      whether to ``--trust`` the sender (MONAI configs are Python; no list of checks makes them safe), so it does
      not decide ``passed``.
    """

    bundle: Path
    findings: list[Finding] = field(default_factory=list)
    model_files: list[ModelFileCheck] = field(default_factory=list)
    metadata_error: str | None = None
    schema: str | None = None
    errors: list[str] = field(default_factory=list)
    manifest: dict | None = None
    manifest_problems: list[str] = field(default_factory=list)
    signature: str | None = None

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]

    @property
    def structural(self) -> list[Finding]:
        return [f for f in self.flagged if f.kind in STRUCTURAL_KINDS]

    @property
    def has_manifest(self) -> bool:
        return self.manifest is not None or bool(self.manifest_problems)

    @property
    def configs_flagged(self) -> list[Finding]:
        return [f for f in self.flagged if f.kind not in STRUCTURAL_KINDS]

    @property
    def passed(self) -> bool:
        models_ok = all(m.ok for m in self.model_files)
        return (
            not self.structural
            and models_ok
            and self.metadata_error is None
            and not self.errors
            and not self.manifest_problems
        )

    def problems(self) -> list[str]:
        """One line per reason the check failed (the MONAI-config information is not among them)."""
        lines = list(self.manifest_problems)
        lines += [f"{f.file}: {f.reason}" for f in self.structural]
        lines += [m.describe() for m in self.model_files if not m.ok]
        if self.metadata_error:
            lines.append(f"configs/metadata.json: {self.metadata_error}")
        return lines + self.errors

    def format(self, verbose: bool = True) -> str:
        """A report for a person: the shared model's checks, then what the MONAI configs would run."""
        out = [f"bundle: {self.bundle}", "", "shared model (manifest.json: what 'medseg predict' runs):"]
        if self.manifest is not None:
            net = self.manifest["network"]["name"]
            steps = ", ".join(s["name"] for s in self.manifest["preprocessing"]) or "none"
            out.append(f"  ok      manifest valid: network {net}, {len(self.manifest['weights'])} weight file(s), "
                       f"steps: {steps}")  # fmt: skip
        if self.manifest_problems:
            out += [f"  FAILED  {p}" for p in self.manifest_problems]
        elif self.manifest is not None:
            out.append(f"  ok      every file's sha256 matches ({len(self.manifest['files'])} files)")
        if not self.has_manifest:
            out.append("  none: this bundle has no manifest.json; 'medseg predict' runs it only with --trust")
        if self.signature:
            out.append(f"  {'ok     ' if 'valid' in self.signature else 'note   '} signature: {self.signature}")
        elif self.manifest is not None:
            out.append("  note    unsigned (anyone could have re-hashed changed files); see 'medseg keys'")
        out += [f"  FAILED  {f.file}: {f.reason}" for f in self.structural]
        out.append("  model files (MONAI bundle):")
        out += [f"    {'ok     ' if m.ok else 'FAILED '} {m.describe()}" for m in self.model_files] or ["    (none)"]
        schema = f" against {self.schema}" if self.schema else ""
        out.append(f"  metadata{schema}: {self.metadata_error or 'ok'}")
        out += [f"  error: {e}" for e in self.errors]
        configs = [f for f in self.findings if f.kind not in STRUCTURAL_KINDS]
        flagged = self.configs_flagged
        out += [
            "",
            f"MONAI configs: information for those who would --trust them ({len(configs)} entries that run code, "
            f"{len(flagged)} reaching outside monai/torch/numpy/medseg):",
        ]
        for f in configs if verbose else flagged:
            mark = "outside" if f.flagged else "       "
            out.append(f"  {mark} {f.file} [{f.location}] {f.kind}: {f.text}" + (f"  <- {f.reason}" * f.flagged))
        out.append("")
        if self.passed:
            verdict = "PASSED" if self.has_manifest else "PASSED (MONAI bundle only: no manifest, needs --trust)"
        else:
            verdict = "FAILED: do not run this bundle unless you trust its sender"
        out.append(verdict)
        return "\n".join(out)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(512)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------- expressions


def _root(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def _dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _hatch(dotted: str) -> str | None:
    for fragment in ESCAPE_HATCHES:
        if fragment in dotted.split(".") or ("." in fragment and fragment in dotted):
            return fragment
    return None


class _ExpressionChecker(ast.NodeVisitor):
    """Collects the reasons an expression is unsafe."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases  # name -> module it stands for (from allowed imports)
        self.bound: list[set[str]] = [set()]
        self.reasons: list[str] = []
        self.new_aliases: dict[str, str] = {}

    def _allowed_name(self, name: str) -> bool:
        return (
            name == LOCAL_REFS
            or name in ALLOWED_PACKAGES
            or name in self.aliases
            or name in SAFE_BUILTINS
            or any(name in scope for scope in self.bound)
        )

    def _check_module(self, module: str, what: str) -> None:
        if _root(module) not in ALLOWED_PACKAGES:
            self.reasons.append(f"{what} {module!r} is outside {', '.join(sorted(ALLOWED_PACKAGES))}")
        elif _hatch(module):
            self.reasons.append(f"{what} {module!r} can run arbitrary code")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(alias.name, "imports")
            self.new_aliases[alias.asname or _root(alias.name)] = alias.name if alias.asname else _root(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.reasons.append("relative import (bundle-local code)")
            return
        self._check_module(node.module or "", "imports")
        for alias in node.names:
            self._check_module(f"{node.module}.{alias.name}", "imports")
            self.new_aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_Name(self, node: ast.Name) -> None:
        if not self._allowed_name(node.id):
            self.reasons.append(f"uses {node.id!r}, which is not an allowed package, reference or pure builtin")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("__") and node.attr.endswith("__"):
            self.reasons.append(f"accesses the dunder attribute {node.attr!r}")
        dotted = _dotted_name(node)
        if dotted:
            head = dotted.split(".", 1)
            full = ".".join([self.aliases.get(head[0], head[0]), *head[1:]])
            hatch = _hatch(full)
            if hatch:
                self.reasons.append(f"{full!r} can run arbitrary code ({hatch})")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg in UNSAFE_KEYWORDS:
                value = keyword.value
                if not (isinstance(value, ast.Constant) and value.value != UNSAFE_KEYWORDS[keyword.arg]):
                    self.reasons.append(f"{keyword.arg}={ast.unparse(value)} lets a file run code when loaded")
        self.generic_visit(node)

    def _visit_scoped(self, node: ast.AST, names: set[str], children: list[ast.AST]) -> None:
        self.bound.append(names)
        for child in children:
            self.visit(child)
        self.bound.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        a = node.args
        names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
        names |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        self._visit_scoped(node, names, [*a.defaults, *[d for d in a.kw_defaults if d is not None], node.body])

    def _comprehension(self, node: ast.AST, elements: list[ast.AST]) -> None:
        names = {n.id for gen in node.generators for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
        self.bound.append(names)
        for gen in node.generators:
            self.visit(gen.iter)
            for cond in gen.ifs:
                self.visit(cond)
        for element in elements:
            self.visit(element)
        self.bound.pop()

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.reasons.append("assigns a variable (:=)")
        self.generic_visit(node)


def analyse_expression(expression: str, aliases: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Why a ``$`` expression is unsafe (empty when it is safe), and the aliases its imports define.

    Args:
        expression: the config string without its leading ``$``.
        aliases: names that earlier allowed imports bound (``{"np": "numpy"}``).

    Returns:
        (reasons, new aliases).
    """
    code = _REFERENCE.sub(f"{LOCAL_REFS}['ref']", expression.strip())
    stripped = code.lstrip()
    mode = "exec" if stripped.startswith(("import ", "from ")) else "eval"
    try:
        tree = ast.parse(stripped, mode=mode)
    except SyntaxError as exc:
        return [f"not valid Python ({exc.msg})"], {}
    checker = _ExpressionChecker(dict(aliases or {}))
    checker.visit(tree)
    return list(dict.fromkeys(checker.reasons)), checker.new_aliases


@functools.cache
def _monai_component(name: str) -> bool:
    """Whether MONAI resolves a short ``_target_`` name to one of its own components."""
    return bool(_locator().get_component_module_name(name)) if name.isidentifier() else False


@functools.lru_cache(maxsize=1)
def _locator():
    from monai.bundle.config_item import ComponentLocator

    return ComponentLocator()


def analyse_target(target: Any, aliases: dict[str, str]) -> list[str]:
    """Why a ``_target_`` value is unsafe (empty when it is safe)."""
    if not isinstance(target, str):
        return [f"a non-string _target_ ({type(target).__name__})"]
    if target.startswith("$"):
        return analyse_expression(target[1:], aliases)[0]
    if target.startswith("@"):
        return []
    if "." not in target:
        # MONAI looks a short name up among its own components, then falls back to pydoc.locate (builtins!)
        return [] if _monai_component(target) else [f"{target!r} is not a MONAI component"]
    module = ".".join([aliases.get(_root(target), _root(target)), *target.split(".")[1:]])
    if _root(module) not in ALLOWED_PACKAGES:
        return [f"{target!r} is outside {', '.join(sorted(ALLOWED_PACKAGES))}"]
    hatch = _hatch(module)
    return [f"{target!r} can run arbitrary code ({hatch})"] if hatch else []


# ---------------------------------------------------------------------------------------------------- configs


def _walk(node: Any, location: str = "") -> Iterator[tuple[str, str | None, Any]]:
    """Yield (location, key, value) for every dict entry and list element, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            loc = f"{location}::{key}" if location else str(key)
            yield loc, str(key), value
            yield from _walk(value, loc)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            loc = f"{location}::{i}" if location else str(i)
            yield loc, None, value
            yield from _walk(value, loc)


def load_config_file(path: Path) -> Any:
    """Parse a JSON or YAML config without evaluating anything (``yaml.safe_load``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


def _macro_reason(value: str, bundle: Path, config_names: set[str]) -> str:
    file_part = value[1:].split("#", 1)[0].split("::", 1)[0]
    if not file_part:
        return ""
    if Path(file_part).name in config_names and not Path(file_part).is_absolute() and ".." not in Path(file_part).parts:
        return ""
    return f"pulls in {file_part!r}, which is not one of this bundle's configs"


def _import_aliases(data: Any) -> dict[str, str]:
    """The names that one config's allowed imports bind: its ``imports`` and any ``$import``/``$from`` value.

    MONAI merges the configs of a run and runs import expressions as it meets them, so a name may be used
    before (or in another file than) the import that binds it; the aliases are collected first and shared.
    """
    aliases: dict[str, str] = {}
    for _, _, value in _walk(data):
        text = value.strip() if isinstance(value, str) else ""
        if text.startswith(("$import ", "$from ")):
            reasons, new = analyse_expression(text[1:], aliases)
            if not reasons:
                aliases.update(new)
    return aliases


def _check_config(
    data: Any, rel: str, bundle: Path, config_names: set[str], report: CheckReport, shared: dict[str, str]
) -> None:
    aliases: dict[str, str] = dict(shared)

    def add(location: str, kind: str, text: str, reasons: list[str]) -> None:
        report.findings.append(Finding(rel, location, kind, text, bool(reasons), "; ".join(reasons)))

    # imports first: the aliases they bind are what later expressions may use
    imports = data.get("imports", []) if isinstance(data, dict) else []
    for i, entry in enumerate(imports if isinstance(imports, list) else [imports]):
        text = str(entry)
        reasons, new = analyse_expression(text[1:] if text.startswith("$") else text, aliases)
        if not reasons:
            aliases.update(new)
        add(f"imports::{i}", "imports", text, reasons)
    for location, key, value in _walk(data):
        if location.startswith("imports"):
            continue
        if key == "_target_":
            add(location, "_target_", str(value), analyse_target(value, aliases))
        elif key == "_requires_":
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    reasons = analyse_expression(item[1:], aliases)[0] if item.startswith("$") else []
                    add(location, "_requires_", item, reasons)
        elif key == "_mode_" and value == "debug":
            add(location, "_mode_", str(value), ["'debug' mode starts the pdb debugger"])
        elif isinstance(value, str) and value.startswith("$"):
            reasons, new = analyse_expression(value[1:], aliases)
            if not reasons:
                aliases.update(new)
            add(location, "expression", value, reasons)
        elif isinstance(value, str) and value.startswith("%"):
            reason = _macro_reason(value, bundle, config_names)
            add(location, "macro", value, [reason] if reason else [])


def _check_logging_conf(path: Path, rel: str, report: CheckReport) -> None:
    """``logging.config.fileConfig`` imports ``class`` and evaluates ``args``: check both."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (configparser.Error, UnicodeDecodeError) as exc:
        report.findings.append(Finding(rel, "", "logging", "unparsable", True, f"cannot parse it ({exc})"))
        return
    for section in parser.sections():
        for key in ("class", "args", "kwargs"):
            if key not in parser[section]:
                continue
            text = parser[section][key]
            if key == "class":
                module = text if "." in text else f"logging.{text}"
                ok = _root(module) == "logging" or _root(module) in ALLOWED_PACKAGES and not _hatch(module)
                reasons = [] if ok else [f"handler class {text!r} is outside logging and the allowed packages"]
            else:
                reasons = _logging_args_reasons(text)
            finding = Finding(rel, f"{section}::{key}", "logging", text, bool(reasons), "; ".join(reasons))
            report.findings.append(finding)


def _logging_args_reasons(text: str) -> list[str]:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return [f"not valid Python ({exc.msg})"]

    def unsafe(node: ast.AST) -> ast.AST | None:
        """The first node that is neither a literal, a container of literals, nor sys.stdout / sys.stderr."""
        if isinstance(node, ast.Constant) or _dotted_name(node) in _LOGGING_STREAMS:
            return None
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return next((bad for e in node.elts if (bad := unsafe(e)) is not None), None)
        if isinstance(node, ast.Dict):
            return next((bad for e in [*node.keys, *node.values] if e is not None and (bad := unsafe(e))), None)
        return node

    bad = unsafe(tree.body)
    if bad is None:
        return []
    return [f"evaluates {ast.unparse(bad)!r}; only literals, sys.stdout and sys.stderr are allowed"]


def _check_model_files(bundle: Path, metadata: dict, report: CheckReport, digest: Callable[[Path], str]) -> None:
    recorded = metadata.get(SHA256_KEY, {}) if isinstance(metadata, dict) else {}
    if not isinstance(recorded, dict):
        report.errors.append(f"configs/metadata.json: '{SHA256_KEY}' must map model files to sha256 strings")
        recorded = {}
    for rel in MODEL_FILES:
        path = bundle / rel
        expected = recorded.get(rel)
        if not path.is_file() and expected is None:
            continue
        report.model_files.append(ModelFileCheck(rel, expected, digest(path) if path.is_file() else None))


def find_schema(bundle: Path, schema: str | Path | None = None) -> Path | None:
    """The schema to verify ``metadata.json`` against: the one given, the bundle's copy, or the repository's.

    A packaged bundle ships the schema it was verified against (``configs/meta_schema.json``), so it verifies
    offline and against the schema version its metadata was written for; a source bundle uses the repository's.
    """
    for candidate in (schema, bundle / "configs" / "meta_schema.json", REPO_SCHEMA):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if schema:
        raise SharingError(schema, "schema file not found", "pass an existing meta_schema.json with --schema")
    return None


@contextlib.contextmanager
def quiet_monai_bundle() -> Iterator[None]:
    """Silence ``monai.bundle.scripts``' INFO lines and its local-schema hash warning (noise in a report)."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No hash value provided")  # the schema is local
            yield
    finally:
        logging.disable(previous)


def verify_bundle_metadata(metadata_file: Path, schema: Path) -> None:
    """Validate with ``monai.bundle.verify_metadata`` against a local schema file (never downloads).

    Raises:
        ValueError: the metadata does not satisfy the schema.
    """
    from monai.bundle import verify_metadata

    # verify_metadata downloads the schema only when ``filepath`` does not exist; it always exists here.
    with quiet_monai_bundle():
        verify_metadata(meta_file=str(metadata_file), filepath=str(schema), create_dir=False)


def _check_manifest(bundle: Path, report: CheckReport, trusted_keys: str | Path | None, require_signed: bool,
                    digest: Callable[[Path], str]) -> None:
    """Validate ``manifest.json``, every file's sha256 and the signature; record problems one line each."""
    from medseg.sharing.manifest import MANIFEST_NAME, SIGNATURE_NAME, read_manifest, verify_files
    from medseg.sharing.signing import trusted_keys as load_keys
    from medseg.sharing.signing import verify_signature

    manifest_file, signature_file = bundle / MANIFEST_NAME, bundle / SIGNATURE_NAME
    if not manifest_file.exists():
        if require_signed:
            report.manifest_problems.append(f"{MANIFEST_NAME}: missing, so the package cannot be signed")
        elif signature_file.exists():
            report.manifest_problems.append(f"{SIGNATURE_NAME}: present without {MANIFEST_NAME}")
        return
    try:
        manifest = read_manifest(bundle)
    except SharingError as exc:
        report.manifest_problems.append(f"{MANIFEST_NAME}: {exc.problem}")
        return
    if signature_file.exists():
        keys = load_keys(trusted_keys) if trusted_keys else None
        try:
            report.signature = verify_signature(manifest_file, signature_file, keys)
        except SharingError as exc:
            report.manifest_problems.append(f"{exc.path}: {exc.problem}")
            return  # a manifest whose signature fails is not evidence about the other files
        if require_signed and keys is None:
            report.manifest_problems.append(f"{SIGNATURE_NAME}: cannot be verified; pass --trusted_keys DIR")
    elif require_signed:
        problem = f"{MANIFEST_NAME}: not signed (no {SIGNATURE_NAME}) but a signature is required"
        report.manifest_problems.append(problem)
    report.manifest_problems += verify_files(bundle, manifest, digest)
    report.manifest = manifest


def check_bundle(
    bundle: str | Path,
    schema: str | Path | None = None,
    trusted_keys: str | Path | None = None,
    require_signed: bool = False,
) -> CheckReport:
    """Check an (extracted) bundle folder without running any of it.

    Args:
        bundle: the bundle folder (holding ``configs/metadata.json``).
        schema: the metadata schema; defaults to the bundle's ``configs/meta_schema.json``, else the
            repository's ``bundles/schema/meta_schema.json`` when running from a checkout.
        trusted_keys: a folder of ``*.pub`` keys to verify ``manifest.sig`` with.
        require_signed: fail unless a trusted key verifies the signature.

    Returns:
        the report; ``report.passed`` says whether the bundle may be run without ``--trust``.
    """
    bundle = Path(bundle)
    report = CheckReport(bundle=bundle)
    files = sorted(p for p in bundle.rglob("*") if p.is_file() or p.is_symlink())
    config_names = {p.name for p in files if p.suffix in CONFIG_SUFFIXES}
    metadata: dict = {}
    parsed: dict[Path, Any] = {}
    for path in files:
        if path.suffix in CONFIG_SUFFIXES and not path.is_symlink():
            try:
                parsed[path] = load_config_file(path)
            except Exception as exc:  # any parser error: the file cannot be checked, so the bundle fails
                report.errors.append(
                    f"{path.relative_to(bundle).as_posix()}: cannot parse it ({type(exc).__name__}: {exc})"
                )
    shared: dict[str, str] = {}
    for data in parsed.values():
        shared.update(_import_aliases(data))
    for path in files:
        rel = path.relative_to(bundle).as_posix()
        if path.is_symlink():
            report.findings.append(Finding(rel, "", "file", "symbolic link", True, "a bundle must hold plain files"))
        elif path in parsed:
            data = parsed[path]
            if rel == "configs/metadata.json":
                metadata = data if isinstance(data, dict) else {}
            _check_config(data, rel, bundle, config_names, report, shared)
        elif path.suffix == ".conf":
            _check_logging_conf(path, rel, report)
        elif path.suffix in (".py", ".pyc", ".so", ".pyd", ".pth"):
            reason = "the bundle ships code that could be imported"
            report.findings.append(Finding(rel, "", "python", rel, True, reason))
        else:
            head = _head(path)
            refused = nested_archive_reason(rel, head) or pickle_reason(rel, head)
            if refused:
                report.findings.append(Finding(rel, "", "file", rel, True, refused))
    metadata_file = bundle / "configs" / "metadata.json"
    if not metadata_file.is_file():
        raise SharingError(bundle, "is not a MONAI bundle (no configs/metadata.json)", "pass a bundle folder or zip")
    digest = functools.cache(sha256_file)  # the model files are hashed for metadata.json and the manifest: read once
    _check_model_files(bundle, metadata, report, digest)
    _check_manifest(bundle, report, trusted_keys, require_signed, digest)
    schema_file = find_schema(bundle, schema)
    if schema_file is None:
        report.metadata_error = "no schema to verify it against; pass --schema bundles/schema/meta_schema.json"
    else:
        report.schema = str(schema_file)
        try:
            verify_bundle_metadata(metadata_file, schema_file)
        except Exception as exc:  # verify_metadata raises ValueError, jsonschema errors, or a missing 'schema' key
            report.metadata_error = f"does not satisfy the schema: {exc}"
    return report
