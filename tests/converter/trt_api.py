"""Type stubs of TensorRT's Python API, built without a GPU or the TensorRT libraries.

Helper for ``test_trt_api_names.py`` (no tests in here). PyPI's ``tensorrt-cuXX-bindings``
wheels hold only the pybind11 extension module; it links ``libnvinfer.so.N``,
``libnvinfer_plugin.so.N`` and ``libnvonnxparser.so.N`` and resolves a handful of factory
functions from them at import time. This module

1. downloads the bindings wheel of a TensorRT major version (``pip download --no-deps``),
2. unpacks it as a package named ``tensorrt`` (what ``import tensorrt`` gives on a Jetson),
3. compiles placeholder shared libraries (right SONAMEs, the factory symbols the extension
   needs, each returning 0) so the extension can be imported,
4. runs ``pybind11-stubgen`` on the imported module and repairs what it writes that is not
   valid Python (parameters named ``in``, a required parameter after defaulted ones, C++ type
   names such as ``nvonnxparser::IParserError``, which become the stub's own classes),

all cached under ``build/trt_api/``; then ``check_modules`` runs mypy on our TensorRT code
against those stubs and returns only the errors about names: unknown attributes, enum
members, classes, methods, wrong keyword/argument counts. ``unchecked_uses`` finds the
``trt.Name`` uses mypy cannot check because ``trt`` is ``Any`` there.

Nothing here ever calls into TensorRT: the placeholders return null pointers, so the
imported module is only good for introspection.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import importlib.util
import keyword
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "trt_api"

# The bindings wheel per TensorRT major version: (distribution, version).
# 10.3.0 is what JetPack 6 ships; 11.4.0.106 was the newest 11.x on PyPI when this was written.
WHEELS: dict[int, tuple[str, str]] = {
    10: ("tensorrt-cu12-bindings", "10.3.0"),
    11: ("tensorrt-cu13-bindings", "11.4.0.106"),
}

# Bump when the recipe below changes: cached stubs with another stamp are rebuilt.
RECIPE = "5"

# Factory symbols the bindings resolve at import, and the library each lives in
# (any placeholder would do, since the dynamic linker searches all of them, but keep it real).
BASE_SYMBOLS: dict[str, str] = {
    "createInferBuilder_INTERNAL": "nvinfer",
    "createInferRuntime_INTERNAL": "nvinfer",
    "createInferRefitter_INTERNAL": "nvinfer",
    "getPluginRegistry": "nvinfer",
    "getBuilderPluginRegistry": "nvinfer",
    "initLibNvInferPlugins": "nvinfer_plugin",
    "createNvOnnxParser_INTERNAL": "nvonnxparser",
    "createNvOnnxParserRefitter_INTERNAL": "nvonnxparser",
    "getNvOnnxParserVersion": "nvonnxparser",
}
BASE_LIBS = ("nvinfer", "nvinfer_plugin", "nvonnxparser")

# Classes the stubs must contain, or something went wrong.
REQUIRED_CLASSES = ("Builder", "IBuilderConfig", "OnnxParser", "BuilderFlag", "ICudaEngine", "IExecutionContext")

# mypy error codes that mean a wrong name or call shape; everything else (argument types, which
# pybind11's implicit conversions make unreliable, our own annotations, ...) is dropped.
KEPT_CODES = frozenset(
    {"attr-defined", "name-defined", "call-arg", "union-attr", "syntax", "import-not-found", "import-untyped"}
)

# Symbols of libraries that are not TensorRT's; never put in a placeholder.
_SYSTEM_PREFIXES = ("Py", "_Py", "_ITM_", "__gmon_start__", "__cxa", "__gxx", "_Unwind", "_Z")
_SYSTEM_VERSIONS = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")
_NV_LIB = re.compile(r"lib(nv[A-Za-z0-9_]*)\.so\.(\d+)")


def _run(
    cmd: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _workdir(major: int) -> Path:
    if major not in WHEELS:
        raise RuntimeError(f"no TensorRT bindings wheel configured for major version {major}")
    dist, version = WHEELS[major]
    return CACHE / f"{dist}-{version}"


def stubs_for(major: int) -> Path:
    """The MYPYPATH folder holding a ``tensorrt`` stub package for TensorRT ``major``.

    Built on first use (a few seconds plus a ~1 MB download) and cached; raises
    ``RuntimeError`` with the reason when it cannot be built here.
    """
    work = _workdir(major)
    stubs = work / "stubs"
    stamp = work / "stamp"
    expected = f"{RECIPE} {sys.version_info[0]}.{sys.version_info[1]}"
    if stamp.is_file() and stamp.read_text() == expected:
        return stubs
    with _locked(CACHE / f".lock-{major}"):
        if stamp.is_file() and stamp.read_text() == expected:
            return stubs
        _build(major, work)
        stamp.write_text(expected)
    return stubs


def _build(major: int, work: Path) -> None:
    dist, version = WHEELS[major]
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc not found: it is needed to compile placeholder TensorRT libraries")
    work.mkdir(parents=True, exist_ok=True)
    for name in ("stamp", "pkg", "libs", "stubs", "stubs.tmp"):
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    # 1. the wheel (kept across recipe changes; one per Python version: it holds a cpXY extension)
    wheel_dir = work / f"wheel-cp{sys.version_info[0]}{sys.version_info[1]}"
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    if not wheels:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "-d",
                str(wheel_dir),
                f"{dist}=={version}",
            ],
            f"pip download {dist}=={version}",
            timeout=300,
        )
        wheels = sorted(wheel_dir.glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {dist}=={version} produced no wheel")

    # 2. unpack its top-level package (tensorrt_bindings, or tensorrt) as `tensorrt`
    unpacked = work / "unpacked"
    if unpacked.is_dir():
        shutil.rmtree(unpacked)
    try:
        with zipfile.ZipFile(wheels[-1]) as zf:
            zf.extractall(unpacked)
    except zipfile.BadZipFile as exc:
        raise RuntimeError(f"{wheels[-1].name} is not a valid wheel: {exc}") from exc
    top = next(
        (unpacked / n for n in ("tensorrt_bindings", "tensorrt") if (unpacked / n / "__init__.py").is_file()), None
    )
    if top is None:
        raise RuntimeError(f"{wheels[-1].name} holds no tensorrt_bindings/ or tensorrt/ package")
    pkg = work / "pkg"
    shutil.copytree(top, pkg / "tensorrt")
    shutil.rmtree(unpacked)
    exts = sorted((pkg / "tensorrt").glob("tensorrt*.so"))
    if not exts:
        raise RuntimeError(f"{wheels[-1].name} holds no tensorrt extension module")

    # 3. placeholder libraries, then import (adding symbols/libraries the loader asks for)
    needed_libs, symbols, symbol_versions = _scan_extension(exts[0], major)
    libs = work / "libs"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(libs)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    )
    env["PYTHONPATH"] = str(pkg)
    env.pop("PYTHONHOME", None)
    probe = [sys.executable, "-c", "import tensorrt, sys; sys.stdout.write(tensorrt.__version__)"]
    for _ in range(20):
        _compile_placeholders(libs, major, needed_libs, symbols, symbol_versions)
        proc = subprocess.run(probe, check=False, capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode == 0:
            break
        err = proc.stderr
        missing_sym = re.search(r"undefined symbol: ([A-Za-z_][A-Za-z0-9_]*)", err)
        missing_lib = re.search(r"(lib[A-Za-z0-9_]+\.so\.\d+): cannot open shared object file", err)
        if missing_sym and missing_sym.group(1) not in symbols:
            symbols[missing_sym.group(1)] = "nvinfer"
        elif (
            missing_lib
            and _NV_LIB.fullmatch(missing_lib.group(1))
            and _NV_LIB.fullmatch(missing_lib.group(1)).group(1) not in needed_libs
        ):
            needed_libs.append(_NV_LIB.fullmatch(missing_lib.group(1)).group(1))
        else:
            tail = "\n".join(err.strip().splitlines()[-10:])
            raise RuntimeError(f"importing the TensorRT {major} bindings with placeholder libraries failed:\n{tail}")
    else:
        raise RuntimeError(f"importing the TensorRT {major} bindings still fails after adding 20 placeholders")
    imported = proc.stdout.strip()
    (work / "placeholders.txt").write_text(
        "".join(
            f"lib{lib}.so.{major}: {' '.join(sorted(s for s, owner in symbols.items() if owner == lib))}\n"
            for lib in needed_libs
        )
    )

    # 4. stubs, written to a temporary folder and moved in place once they check out. First with
    # the C++ types pybind11 could not name printed as-is (repaired to the stub's classes), and if
    # that cannot be made valid, with stubgen's own `...` in their place.
    tmp = work / "stubs.tmp"
    problem = ""
    for as_is in (True, False):
        if tmp.exists():
            shutil.rmtree(tmp)
        _run(
            [
                sys.executable,
                "-m",
                "pybind11_stubgen",
                "--ignore-all-errors",
                "-o",
                str(tmp),
                "tensorrt",
                *(["--print-invalid-expressions-as-is"] if as_is else []),
            ],
            f"pybind11-stubgen on TensorRT {imported}",
            env=env,
            cwd=work,
            timeout=300,
        )
        pyis = sorted((tmp / "tensorrt").rglob("*.pyi"))
        if not pyis:
            raise RuntimeError(f"pybind11-stubgen wrote no stubs for TensorRT {imported}")
        texts = {pyi: _repair_stub(pyi.read_text(), cpp_names=as_is) for pyi in pyis}
        try:
            for pyi, text in texts.items():
                ast.parse(text, filename=str(pyi))
        except SyntaxError as exc:
            problem = (
                f"stub {exc.filename} line {exc.lineno} for TensorRT {imported} does not parse after repair: {exc.msg}"
            )
            continue
        for pyi, text in texts.items():
            pyi.write_text(text)
        break
    else:
        raise RuntimeError(problem)
    alltext = "\n".join(p.read_text() for p in pyis)
    missing = [c for c in REQUIRED_CLASSES if not re.search(rf"^\s*class {c}\b", alltext, re.MULTILINE)]
    if missing:
        raise RuntimeError(f"stubs for TensorRT {imported} lack classes: {', '.join(missing)}")
    tmp.rename(work / "stubs")
    (work / "version.txt").write_text(imported + "\n")


def _scan_extension(ext: Path, major: int) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """What ``ext`` needs: TensorRT library names, {symbol: library}, {symbol: symbol version}.

    Uses readelf/nm when present; without them the base lists are used and the import loop in
    ``_build`` adds what the loader reports missing.
    """
    needed = list(BASE_LIBS)
    symbols = dict(BASE_SYMBOLS)
    symbol_versions: dict[str, str] = {}
    versions: dict[str, set[str]] = {}  # library -> version nodes the extension needs from it
    if shutil.which("readelf"):
        out = subprocess.run(
            ["readelf", "-d", "-V", "--wide", str(ext)], check=False, capture_output=True, text=True
        ).stdout
        for m in re.finditer(r"\(NEEDED\)\s+Shared library: \[(lib[^\]]+)\]", out):
            nv = _NV_LIB.fullmatch(m.group(1))
            if nv and int(nv.group(2)) == major and nv.group(1) not in needed:
                needed.append(nv.group(1))
        # Version needs section: "  000000: Version: 1  File: libnvinfer.so.10  Cnt: 1" then "Name: VER ..."
        current = None
        for line in out.splitlines():
            fm = re.search(r"File: (\S+)", line)
            if fm:
                nv = _NV_LIB.fullmatch(fm.group(1))
                current = nv.group(1) if nv else None
                continue
            nm = re.search(r"Name: (\S+)", line)
            if nm and current:
                versions.setdefault(current, set()).add(nm.group(1))
    if shutil.which("nm"):
        out = subprocess.run(
            ["nm", "-D", "--undefined-only", "--with-symbol-versions", str(ext)],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) != 2 or parts[0] != "U":
                continue  # weak references need no definition
            name, _, ver = parts[1].partition("@")
            ver = ver.lstrip("@")
            if name.startswith(_SYSTEM_PREFIXES) or ver.startswith(_SYSTEM_VERSIONS):
                continue
            owner = next((lib for lib, vs in versions.items() if ver and ver in vs), None)
            if owner is None and name in symbols:
                owner = symbols[name]
            elif owner is None:
                if ver or not _looks_like_tensorrt(name):
                    continue  # libc/libdl/libm without a version tag, or another system library
                owner = "nvonnxparser" if "OnnxParser" in name else "nvinfer_plugin" if "Plugins" in name else "nvinfer"
            symbols[name] = owner
            if ver:
                symbol_versions[name] = ver
    for lib in versions:
        if lib not in needed:
            needed.append(lib)
    return needed, symbols, symbol_versions


def _looks_like_tensorrt(name: str) -> bool:
    return bool(re.search(r"Infer|Plugin|OnnxParser|Nv|nvinfer|Safe|Dispatch|Lean", name))


def _compile_placeholders(
    libs: Path, major: int, needed: list[str], symbols: dict[str, str], symbol_versions: dict[str, str]
) -> None:
    libs.mkdir(parents=True, exist_ok=True)
    for lib in needed:
        names = sorted(s for s, owner in symbols.items() if owner == lib)
        src = libs / f"{lib}.c"
        src.write_text(
            "/* placeholder: TensorRT factory symbols that return null */\n"
            + "".join(f"void *{n}(void) {{ return 0; }}\n" for n in names)
            + ("" if names else "int placeholder_empty_library;\n")
        )
        soname = f"lib{lib}.so.{major}"
        cmd = ["gcc", "-shared", "-fPIC", "-O0", "-o", str(libs / soname), f"-Wl,-soname,{soname}", str(src)]
        nodes = sorted({symbol_versions[n] for n in names if n in symbol_versions})
        if nodes:  # versioned references need a library defining those version nodes
            script = libs / f"{lib}.map"
            body = []
            for v in nodes:
                members = [
                    n for n in names if symbol_versions.get(n) == v or (v == nodes[0] and n not in symbol_versions)
                ]
                body.append(f"{v} {{ global: {' '.join(n + ';' for n in members)} }};\n")
            script.write_text("".join(body))
            cmd.append(f"-Wl,--version-script={script}")
        _run(cmd, f"gcc (placeholder {soname})", timeout=120)


def _split_params(params: str) -> list[str]:
    out, depth, cur = [], 0, []
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*(?:->.*)?:.*)$")
# C++ types pybind11 could not name (printed as-is with --print-invalid-expressions-as-is),
# e.g. `nvonnxparser::IParserError`, `nvinfer1::v_1_0::IErrorRecorder`, `detail::accessor<...>`
_CPP_NAME = re.compile(r"\b(?:\w+::)+\w+(?:<[^()\[\]]*?>+)?")
# reprs of default values, e.g. `= <DataType.FLOAT: 0>`
_REPR_DEFAULT = re.compile(r"=\s*<[^<>]*>")


def _python_name(cpp: str, classes: set[str]) -> str:
    """The stub's class for a C++ type name (``IBuilder`` -> ``Builder``), else ``typing.Any``."""
    last = cpp.split("<", 1)[0].rsplit("::", 1)[-1]
    for cand in (last, last[1:] if last.startswith("I") else ""):
        if cand in classes:
            return cand
    return "typing.Any"


def _repair_stub(text: str, cpp_names: bool = True) -> str:
    """Make pybind11-stubgen's output valid Python (and as precise as it can be).

    Outside docstrings: C++ type names become the stub's classes (or ``typing.Any``), default
    value reprs become ``...``, pybind11's bare ``capsule`` becomes ``typing.Any``; in ``def``
    lines, parameters named after Python keywords (``in``) get a trailing ``_`` and required
    parameters after defaulted ones get ``= ...``.
    """
    classes = set(re.findall(r"^class (\w+)", text, re.MULTILINE))
    lines = text.splitlines()
    in_doc = False
    for i, line in enumerate(lines):
        quotes = line.count('"""')
        if in_doc or line.lstrip().startswith('"""'):
            in_doc = in_doc != (quotes % 2 == 1)
            continue
        if cpp_names:
            line = _CPP_NAME.sub(lambda m: _python_name(m.group(0), classes), line)
            line = _REPR_DEFAULT.sub("= ...", line)
        line = re.sub(r"(?<![\w.])capsule\b", "typing.Any", line)
        lines[i] = line
        m = _DEF.match(line)
        if not m:
            continue
        src = line.strip()
        try:
            ast.parse(src + " ..." if src.endswith(":") else src)
            continue
        except SyntaxError:
            pass
        head, params, tail = m.groups()
        fixed, seen_default, kw_only = [], False, False
        for p in _split_params(params):
            name = p.partition(":")[0].partition("=")[0].strip()
            if keyword.iskeyword(name):
                p = p.replace(name, name + "_", 1)
            if p.startswith("*"):
                kw_only = True
            elif p != "/":
                if "=" in p.split(":", 1)[-1] or ("=" in p and ":" not in p):
                    seen_default = True
                elif seen_default and not kw_only:
                    p += " = ..."
            fixed.append(p)
        lines[i] = head + ", ".join(fixed) + tail
    return "\n".join(lines) + "\n"


def _mypy(major: int, paths: list[str], cwd: Path) -> list[tuple[str, int, str, str]]:
    """(path, line, code, message) of every mypy error in ``paths`` (absolute)."""
    if importlib.util.find_spec("mypy") is None:
        raise RuntimeError("mypy is not installed (pip install -e '.[dev]')")
    stubs = stubs_for(major)
    env = dict(os.environ)
    env["MYPYPATH"] = str(stubs)
    env.pop("PYTHONPATH", None)
    # the repository's mypy settings (if any) do not apply; mistakes inside the stubs are not ours
    config = CACHE / "mypy.ini"
    wanted = "[mypy]\n\n[mypy-tensorrt.*]\nignore_errors = True\n"
    if not config.is_file() or config.read_text() != wanted:
        config.write_text(wanted)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        # only the given files and the tensorrt stubs: other imports become Any
        "--follow-imports=skip",
        "--no-site-packages",
        "--ignore-missing-imports",
        "--check-untyped-defs",  # also look inside functions without annotations
        "--no-error-summary",
        "--show-error-codes",
        "--no-color-output",
        "--hide-error-context",
        "--show-absolute-path",
        "--config-file",
        str(config),
        # no incremental cache: mypy would replay a cached module's errors under the path it had
        # then (same module name, same content, e.g. a sample under another tmp_path) -- and
        # reading the stubs' cache saves only ~1 s
        "--no-incremental",
        "--cache-dir",
        os.devnull,
        *paths,
    ]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"mypy: {exc}") from exc
    errors = []
    for line in proc.stdout.splitlines():
        m = re.match(r"(.*?):(\d+): error: (.*?)  \[([a-z-]+)\]$", line)
        if m:
            errors.append((m.group(1), int(m.group(2)), m.group(4), m.group(3)))
    # exit 1 means "found errors"; anything else, or 1 without any, is mypy itself failing
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not errors):
        raise RuntimeError(f"mypy failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return errors


def _abs_paths(modules: list[Path]) -> list[str]:
    paths = [str(Path(p) if Path(p).is_absolute() else ROOT / p) for p in modules]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such module(s): {', '.join(missing)}")
    return paths


def check_modules(major: int, modules: list[Path]) -> list[str]:
    """mypy's name/attribute/call-shape errors for ``modules`` against TensorRT ``major``'s API.

    ``modules`` are paths (relative ones are taken from the repository root). Returns the error
    lines (``path:line: error: message  [code]``); empty means every TensorRT name mypy could
    follow exists. Only names on a typed ``tensorrt`` module are checked: a ``trt`` that is
    ``Any`` (a parameter ``trt: Any``, a function returning the module as ``Any``) checks
    nothing -- see ``unchecked_uses``. Raises ``RuntimeError`` when the stubs cannot be built or
    mypy cannot run.
    """
    paths = _abs_paths(modules)
    return [
        f"{path}:{line}: error: {msg}  [{code}]"
        for path, line, code, msg in _mypy(major, paths, ROOT)
        if path in paths and code in KEPT_CODES
    ]


CANARY = "__unchecked_canary"


def unchecked_uses(major: int, modules: list[Path], alias: str = "trt") -> list[str]:
    """Uses ``alias.Name`` in ``modules`` that mypy does not check (``alias`` is ``Any`` there).

    Copies each module with every ``alias.Name`` (code, not strings or comments) renamed to a
    name that cannot exist and runs mypy: a use that then draws no error is not being checked.
    Returns ``"path:line in function: alias.Name"`` entries (path relative to the repository
    root when inside it; ``function`` is ``<module>`` at top level).
    """
    import io
    import tempfile
    import tokenize

    paths = _abs_paths(modules)
    with tempfile.TemporaryDirectory(prefix="trt_api_canary_") as tmpdir:
        tmp = Path(tmpdir)
        copies: dict[str, tuple[str, list[tuple[int, str]]]] = {}
        for i, path in enumerate(paths):
            src = Path(path).read_text()
            toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
            uses = []
            out = []
            for k, tok in enumerate(toks):
                if (
                    tok.type == tokenize.NAME
                    and k >= 2
                    and toks[k - 1].string == "."
                    and toks[k - 2].string == alias
                    and toks[k - 2].type == tokenize.NAME
                    and (k < 3 or toks[k - 3].string != ".")
                ):
                    uses.append((tok.start[0], tok.string))
                    tok = tok._replace(string=tok.string + CANARY)
                out.append(tok)
            rel = Path(path).relative_to(ROOT) if Path(path).is_relative_to(ROOT) else Path(f"m{i}") / Path(path).name
            copy = tmp / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            for d in copy.relative_to(tmp).parents:  # keep package structure for mypy's module names
                if d != Path("."):
                    (tmp / d / "__init__.py").touch()
            copy.write_text(tokenize.untokenize(out))
            copies[str(copy)] = (str(rel) if Path(path).is_relative_to(ROOT) else path, uses)
        flagged = {
            (p, line, m.group(1))
            for p, line, code, msg in _mypy(major, list(copies), tmp)
            if (m := re.search(r'"(\w+)' + CANARY + '"', msg))
        }
        result = []
        for copy, (shown, uses) in copies.items():
            funcs = _enclosing_functions(Path(copy).read_text())
            for line, name in uses:
                if (copy, line, name) not in flagged:
                    result.append(f"{shown}:{line} in {funcs.get(line, '<module>')}: {alias}.{name}")
        return result


def _enclosing_functions(src: str) -> dict[int, str]:
    """line -> name of the innermost function around it."""
    out: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for ln in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    out[ln] = inner
            visit(child, inner)

    visit(ast.parse(src), "<module>")
    return out
