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
the package (the file's writing included, which configcache.py does much alike): what
it imported would be loaded the usual way before the cache could run it.
"""

import marshal
import posix
import sys

PACKAGE = __name__.rpartition(".")[0]
DIRECTORY = __file__.rpartition("/")[0]
ROOTS = ("hook", "configcache", "ethtool")  # what an ifup or ifdown imports
FORMAT = 2  # bump when the file's layout, or how build() compiles, changes


def cache_path() -> str:
    return f"{DIRECTORY}/__pycache__/hookcode.{sys.implementation.cache_tag}.bundle"


def _magic() -> bytes:
    # importlib's own bytecode magic: already loaded, unlike importlib.util
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def main(config=None) -> None:
    """The launcher's entry: load the hook's code, then run the hook."""
    try:
        modules = load()
        if modules is None and may_write():
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
    if data[:4] != _magic():
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


def may_write() -> bool:
    """The cache's directory can be written (or made): root's hooks, a user's venv."""
    directory = cache_path().rpartition("/")[0]
    if posix.access(directory, posix.F_OK):
        return posix.access(directory, posix.W_OK)
    return posix.access(DIRECTORY, posix.W_OK)


def build():
    """Compile the hook path from its sources and save it; the (name, code) pairs."""
    import ast

    parsed = {}
    order = []

    def visit(name: str) -> None:
        if name in parsed:
            return
        path = f"{DIRECTORY}/{name}.py"
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            info = posix.fstat(fd)
            source = posix.read(fd, info.st_size + 1)
        finally:
            posix.close(fd)
        tree = ast.parse(source, path)
        parsed[name] = (info, tree)
        for dependency in top_level_imports(tree):
            visit(dependency)
        order.append(name)  # after what it imports: the order to run them in

    for root in ROOTS:
        visit(root)
    sources = []
    modules = []
    for name in order:
        info, tree = parsed[name]
        strip_annotations(tree)
        code = compile(tree, f"{DIRECTORY}/{name}.py", "exec", dont_inherit=True, optimize=2)
        sources.append((name, info.st_size, info.st_mtime_ns))
        modules.append((name, code))
    try:
        save(_magic() + marshal.dumps((FORMAT, tuple(sources), tuple(modules))))
    except OSError:
        pass  # compiled all the same: this hook runs it
    return tuple(modules)


def top_level_imports(tree) -> list:
    """The package's modules that `tree` imports when it runs (`from .x import y` in its
    body; not those under `if TYPE_CHECKING:` or in functions)."""
    import ast

    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.append(node.module.partition(".")[0])
            else:  # from . import x
                found.extend(alias.name for alias in node.names)
    return found


def strip_annotations(tree) -> None:
    """Remove what only a type checker reads: the annotations, which each `def` would
    build into a dict at every hook start, and `from __future__ import annotations`,
    which would import the __future__ module."""
    import ast

    class Unannotated(ast.NodeTransformer):
        def visit_arg(self, node):
            node.annotation = None
            return node

        def visit_FunctionDef(self, node):
            node.returns = None
            self.generic_visit(node)
            return node

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_AnnAssign(self, node):
            if node.value is None:  # `name: type` alone binds nothing
                return ast.copy_location(ast.Pass(), node)
            return ast.copy_location(ast.Assign([node.target], node.value), node)

        def visit_ImportFrom(self, node):
            if node.module == "__future__" and [alias.name for alias in node.names] == ["annotations"]:
                return None
            return node

    Unannotated().visit(tree)
    ast.fix_missing_locations(tree)


def save(data: bytes) -> None:
    """Write the cache whole or not at all (a hook reading it sees old or new)."""
    path = cache_path()
    directory = path.rpartition("/")[0]
    try:
        posix.mkdir(directory, 0o755)
    except FileExistsError:
        pass
    temporary = f"{path}.{posix.getpid()}.new"
    fd = posix.open(temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW
                    | posix.O_CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view):]
        finally:
            posix.close(fd)
        posix.replace(temporary, path)
    except BaseException:
        try:
            posix.unlink(temporary)
        except OSError:
            pass
        raise
