"""The hook path's code in one precompiled file, read in one go at each hook start.

QEMU runs a hook on every VM start, and most of what a hook costs over the bare
interpreter is importing: for each of its modules importlib searches the path, stats
the source, opens and reads a .pyc and unmarshals it. Here the modules an ifup or
ifdown imports are compiled once into one file, `__pycache__/hookcode.<tag>.bundle`
in the package directory, without docstrings and asserts (as `python -OO` would) and
without annotations, which nothing reads at run time; the launcher reads that file and
runs the modules in dependency order.

It is a cache, as __pycache__ is: keyed on the interpreter's bytecode magic and each
source's size and mtime, rebuilt by a hook that finds it missing or stale (when it
may write the directory), and ignored when it is not trustworthy or not readable.
The hook then imports as usual, so nothing about the cache can fail a hook.

This module is on the hook path: `posix`, not `os` (see env.py). It imports nothing of
the package: what it imported would be loaded the usual way before the cache could run
it. Making the file is hookbuild.py's, which a hook imports only when it must.
"""

import marshal
import posix
import sys

PACKAGE = __name__.rpartition(".")[0]
DIRECTORY = __file__.rpartition("/")[0]
FORMAT = 2  # bump when the file's layout, or how hookbuild.py compiles, changes


def cache_path() -> str:
    return f"{DIRECTORY}/__pycache__/hookcode.{sys.implementation.cache_tag}.bundle"


def magic() -> bytes:
    # importlib's own bytecode magic: already loaded, unlike importlib.util
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def main(config=None) -> None:
    """The launcher's entry: load the hook's code, then run the hook."""
    try:
        modules = load()
        if modules is None and may_write():
            from .hookbuild import build  # only when the cache is to be made

            modules = build()
        if modules is not None:
            run(modules)
    except Exception:  # noqa: BLE001 - a cache never fails a hook: import as usual
        pass
    from .hook import main as run_hook

    run_hook(config=config)


def load():
    """The cached (name, code) pairs, in dependency order; None when the file is
    missing, stale, damaged, or could have been written by someone but root or us."""
    try:
        fd = posix.open(cache_path(), posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = posix.fstat(fd)
        if info.st_mode & 0o170000 != 0o100000:  # not S_ISREG (see lock.py)
            return None
        if info.st_uid not in (0, posix.geteuid()) or info.st_mode & 0o022:
            return None  # whoever could write it could run code as the hook
        data = posix.read(fd, info.st_size + 1)
    finally:
        posix.close(fd)
    if data[:4] != magic():
        return None  # another interpreter's bytecode: not even to be unmarshalled
    try:
        form, sources, modules = marshal.loads(memoryview(data)[4:])
        if form == FORMAT and fresh(sources):
            return modules
    except (ValueError, EOFError, TypeError):
        pass  # damaged: rebuilt like a stale one
    return None


def fresh(sources) -> bool:
    """Every source file still has the size and mtime it was compiled from."""
    for name, size, mtime in sources:
        try:
            info = posix.stat(f"{DIRECTORY}/{name}.py")
        except OSError:
            return False
        if info.st_size != size or info.st_mtime_ns != mtime:
            return False
    return True


def may_write() -> bool:
    """The cache's directory can be written (or made): root's hooks, a user's venv."""
    directory = cache_path().rpartition("/")[0]
    if posix.access(directory, posix.F_OK):
        return posix.access(directory, posix.W_OK)
    return posix.access(DIRECTORY, posix.W_OK)


def run(modules) -> None:
    """Execute the modules as importing them would, dependencies first."""
    package = sys.modules[PACKAGE]
    module_type = type(sys)
    for name, code in modules:
        qualified = f"{PACKAGE}.{name}"
        if qualified in sys.modules:
            continue
        module = module_type(qualified)
        module.__package__ = PACKAGE
        module.__file__ = code.co_filename
        sys.modules[qualified] = module
        try:
            exec(code, module.__dict__)
        except BaseException:
            del sys.modules[qualified]
            raise
        setattr(package, name, module)
