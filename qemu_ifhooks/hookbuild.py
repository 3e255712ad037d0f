"""Compiling the hook path into the file hookcode.py reads (see there), when a hook
finds it missing, stale or damaged. Kept apart so that the hooks that find it fresh,
nearly all of them, load none of this. Like hookcode.py, it imports nothing of the
package besides hookcode (the file's writing included, which configcache.py does much
alike): the modules it compiles are not to be imported the usual way first.
"""

import marshal
import posix

from .hookcode import DIRECTORY, FORMAT, cache_path, magic

ROOTS = ("hook", "configcache", "ethtool")  # what an ifup or ifdown imports


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
        save(magic() + marshal.dumps((FORMAT, tuple(sources), tuple(modules))))
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
