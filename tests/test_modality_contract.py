"""The modality contract (docs/architecture.md, "The modality contract"), checked on every installed package.

Every package registered under ``diffcore.modalities`` has the same rooms, exports the same public API from
its ``__init__``, takes its configuration the same way, offers the same commands with the same shared
options, never seeds the global RNG and writes files only through :mod:`diffcore.io`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import typing
from pathlib import Path

import pytest
import typer
from diffcore.modality import discover
from diffcore.pipeline import Pipeline
from diffcore.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
INSTALLED = discover()
PACKAGES = {name: item.package for name, item in INSTALLED.items()}

ROOMS = ("data", "models", "pipeline", "metrics", "io", "cli", "bench", "config")
VERBS = ("train", "sample", "evaluate")
SHARED_OPTIONS = ("--device", "--seed", "--out", "--config", "--set", "--quiet", "--debug")
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

# Being brought onto the contract (issue #22): each entry is removed when its package or file complies.
PENDING_MODALITIES: set[str] = set()
PENDING_FILES: set[str] = set()


@pytest.fixture(autouse=True)
def _pending(request):
    modality = getattr(request.node, "callspec", None) and request.node.callspec.params.get("modality")
    if modality in PENDING_MODALITIES:
        pytest.xfail(f"diff-{modality} is being brought onto the contract (issue #22)")


def _source_files(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return sorted(root.rglob("*.py"))


@pytest.mark.parametrize("modality", sorted(PACKAGES))
def test_every_room_exists(modality):
    package = PACKAGES[modality]
    missing = [room for room in ROOMS if importlib.util.find_spec(f"{package}.{room}") is None]
    assert not missing, f"{package} lacks {missing}"
    data = importlib.util.find_spec(f"{package}.data")
    assert data.submodule_search_locations, f"{package}.data must be a package (a folder)"


@pytest.mark.parametrize("modality", sorted(PACKAGES))
def test_init_exports_the_pipeline_and_the_three_verbs(modality):
    pkg = importlib.import_module(PACKAGES[modality])
    exported = set(pkg.__all__)
    for verb in VERBS:
        assert verb in exported and callable(getattr(pkg, verb)), f"{pkg.__name__}.{verb}"
    pipelines = [
        name
        for name in exported
        if isinstance(getattr(pkg, name), type) and issubclass(getattr(pkg, name), Pipeline)
    ]
    assert len(pipelines) == 1, (
        f"{pkg.__name__} must export one diffcore.pipeline.Pipeline subclass: {pipelines}"
    )
    cls = getattr(pkg, pipelines[0])
    assert callable(cls.save_pretrained) and callable(cls.from_pretrained)


def _first_params(fn: typing.Callable) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is not p.KEYWORD_ONLY]


def _annotation(fn: typing.Callable, name: str) -> type:
    return typing.get_type_hints(fn)[name]


@pytest.mark.parametrize("modality", sorted(PACKAGES))
def test_verbs_have_the_same_meaning_everywhere(modality):
    pkg = importlib.import_module(PACKAGES[modality])
    assert _first_params(pkg.train)[:1] == ["config"]
    assert issubclass(_annotation(pkg.train, "return"), Pipeline)
    for verb in ("sample", "evaluate"):
        assert _first_params(getattr(pkg, verb))[:2] == ["pipeline", "config"], (
            f"{verb}(pipeline, config, ...)"
        )
    assert "generator" in inspect.signature(pkg.sample).parameters, "sample takes generator="
    assert typing.get_origin(_annotation(pkg.evaluate, "return")) is dict


@pytest.mark.parametrize("modality", sorted(PACKAGES))
def test_training_settings_are_the_cores_train_config_reused_not_restated(modality):
    pkg = importlib.import_module(PACKAGES[modality])
    cfg_cls = _annotation(pkg.train, "config")
    assert dataclasses.is_dataclass(cfg_cls)
    hints = typing.get_type_hints(cfg_cls)
    assert hints.get("train") is TrainConfig, (
        f"{cfg_cls.__name__} must nest diffcore's TrainConfig as 'train'"
    )
    restated = sorted(TRAIN_FIELDS & {f.name for f in dataclasses.fields(cfg_cls)})
    assert not restated, f"{cfg_cls.__name__} restates TrainConfig fields {restated}"
    for verb in ("sample", "evaluate"):
        c = _annotation(getattr(pkg, verb), "config")
        names = {f.name for f in dataclasses.fields(c)}
        assert {"seed", "device"} <= names, f"{c.__name__} needs seed and device"
        assert typing.get_type_hints(c)["device"] == typing.Literal["auto", "cpu", "cuda"]


def _options(app: typer.Typer, command: str) -> set[str]:
    group = typer.main.get_command(app)
    cmd = group.commands.get(command)  # type: ignore[attr-defined]
    assert cmd is not None, f"no '{command}' command"
    return {opt for param in cmd.params for opt in param.opts}


@pytest.mark.parametrize("modality", sorted(PACKAGES))
def test_commands_share_their_options(modality):
    app = INSTALLED[modality].modality.app
    assert app is not None
    for verb in VERBS:
        options = _options(app, verb)
        missing = [o for o in SHARED_OPTIONS if o not in options]
        assert not missing, f"diffuse {modality} {verb} lacks {missing}"
    train_missing = [o for o in ("--resume", "--ema-decay", "--data") if o not in _options(app, "train")]
    assert not train_missing, f"diffuse {modality} train lacks {train_missing}"
    for verb in ("sample", "evaluate"):
        assert "--pipeline" in _options(app, verb)


@pytest.mark.parametrize("modality", sorted(PACKAGES))
def test_bench_is_the_modalitys_bench_room(modality):
    bench_module = importlib.import_module(f"{PACKAGES[modality]}.bench")
    assert INSTALLED[modality].modality.bench is bench_module.bench
    signature = inspect.signature(bench_module.bench)
    signature.bind(Path("out"), True)  # bench(out_dir, quick) works; a context parameter has a default
    context = signature.parameters.get("context")
    assert context is None or context.default is not inspect.Parameter.empty, "context needs a default"


# ---------------------------------------------------------------- rules checked on the source of every package

GLOBAL_SEEDING = {
    ("torch", "manual_seed"),
    ("cuda", "manual_seed"),
    ("cuda", "manual_seed_all"),
    ("random", "seed"),
}
WRITE_MODES = {"w", "wb", "x", "xb", "w+", "wb+"}
ALLOWED_WRITERS = {Path("diffcore/io.py")}
ALLOWED_SEEDERS = {Path("diffcore/rng.py")}


def _all_library_files() -> list[tuple[str, Path]]:
    pending = {PACKAGES[m] for m in PENDING_MODALITIES if m in PACKAGES}
    out = []
    for package in ["diffcore", *sorted(set(PACKAGES.values()) - pending)]:
        for f in _source_files(package):
            if str(_relative(f)) not in PENDING_FILES:
                out.append((package, f))
    return out


def _relative(f: Path) -> Path:
    parts = f.parts
    return Path(*parts[parts.index("src") + 1 :]) if "src" in parts else f


def _call_name(call: ast.Call) -> tuple[str | None, str]:
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
        return owner_name, func.attr
    return None, getattr(func, "id", "")


def test_no_library_function_seeds_the_global_rng():
    offenders = []
    for _, f in _all_library_files():
        if _relative(f) in ALLOWED_SEEDERS:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                owner, name = _call_name(node)
                if (owner, name) in GLOBAL_SEEDING or name in ("set_seed", "seed_everything"):
                    offenders.append(f"{_relative(f)}:{node.lineno} {owner}.{name}")
                if owner in ("np", "numpy") and name == "seed":
                    offenders.append(f"{_relative(f)}:{node.lineno} np.random.seed")
    assert not offenders, "seed through a torch.Generator or diffcore.rng.seeded:\n" + "\n".join(offenders)


def _open_mode(call: ast.Call) -> str | None:
    mode = (
        call.args[1]
        if len(call.args) > 1
        else next((k.value for k in call.keywords if k.arg == "mode"), None)
    )
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None


def _diffcore_io_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to diffcore.io's functions, and names bound to the module itself, in one file."""
    functions, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "diffcore.io":
            functions |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "diffcore":
            modules |= {a.asname or a.name for a in node.names if a.name == "io"}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "diffcore.io" and a.asname}
    return functions, modules


def test_files_are_written_only_through_diffcore_io():
    """``open(..., "w")``, ``Path.write_text/bytes``, ``json.dump``, ``torch.save`` and ``np.save`` outside
    :mod:`diffcore.io` (or a ``with atomic_path(...)`` block) write non-atomically; appending to a log (mode
    ``"a"``) is allowed."""
    offenders = []
    for _, f in _all_library_files():
        if _relative(f) in ALLOWED_WRITERS:
            continue
        tree = ast.parse(f.read_text())
        io_functions, io_modules = _diffcore_io_names(tree)
        inside_atomic = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.With)
            and any(
                isinstance(item.context_expr, ast.Call)
                and _call_name(item.context_expr)[1] in ("atomic_path", "atomic_open")
                for item in node.items
            )
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            owner, name = _call_name(node)
            through_io = (
                (owner is None and name in io_functions) or owner in io_modules or id(node) in inside_atomic
            )
            bad = not through_io and (
                (name == "open" and owner is None and _open_mode(node) in WRITE_MODES)
                or name in ("write_text", "write_bytes")
                or (owner == "json" and name == "dump")
                or (owner == "torch" and name == "save")
                or (owner in ("np", "numpy") and name in ("save", "savez", "savez_compressed", "savetxt"))
            )
            if bad:
                offenders.append(f"{_relative(f)}:{node.lineno} {owner + '.' if owner else ''}{name}")
    assert not offenders, (
        "write through diffcore.io (write_json, write_text, atomic_path, ...):\n" + "\n".join(offenders)
    )
