"""Exit statuses and the errors that carry them.

This is the one place where the exit-status table lives: every failure is raised as a
subclass of HookError and turned into a status once, at the entry point.
"""



class ExitStatus:
    """The exit statuses, sysexits(3) style. Plain ints: `enum` would cost the hook
    a millisecond or more of import at every VM start."""

    OK = 0
    FAILED = 1  # demo/check: something they verify did not hold (not a hook status)
    USAGE = 64  # wrong arguments, invalid interface name, hook name maps to no segment
    DATAERR = 65  # the interface is not a TAP device
    UNAVAILABLE = 69  # TAP, bridge or uplink missing; offload check failed under enforce
    SOFTWARE = 70  # unexpected internal error
    OSERR = 71  # the kernel refused an operation
    TEMPFAIL = 75  # a lock could not be taken in time
    NOPERM = 77  # no CAP_NET_ADMIN; config file insecure; access denied
    CONFIG = 78  # config missing, unreadable or invalid

    @classmethod
    def table(cls) -> dict:
        """{name: status} for every status, in the order above."""
        return {name: value for name, value in vars(cls).items() if name.isupper()}


class HookError(Exception):
    """A failure with a message for the user (what happened and what to do)."""

    status = ExitStatus.SOFTWARE


class UsageError(HookError):
    status = ExitStatus.USAGE


class NotATapError(HookError):
    status = ExitStatus.DATAERR


class UnavailableError(HookError):
    status = ExitStatus.UNAVAILABLE


class KernelError(HookError):
    status = ExitStatus.OSERR


class LockTimeout(HookError):
    status = ExitStatus.TEMPFAIL


class PermissionDenied(HookError):
    status = ExitStatus.NOPERM


class ConfigError(HookError):
    status = ExitStatus.CONFIG


def run_guarded(label: str, body) -> int:
    """Run `body()` and turn its outcome into an exit status, printing at most one line.

    This is the only place where errors become exit statuses. An unexpected exception
    is a bug: its traceback goes to syslog, the user gets one line and status 70."""
    try:
        body()
        return ExitStatus.OK
    except HookError as error:
        say_failure(f"{label}: {error}")
        return error.status
    except KeyboardInterrupt:
        say_failure(f"{label}: interrupted")
        return ExitStatus.SOFTWARE
    except Exception as error:  # noqa: BLE001 - the last line of defence
        import os
        import traceback

        from .log import LOG_DEBUG, emit

        try:
            for line in traceback.format_exc().splitlines():
                emit(LOG_DEBUG, f"{label}: {line}")
            if os.environ.get("QEMU_IFHOOKS_DEBUG"):
                traceback.print_exc()
        except Exception:  # noqa: BLE001 - the one line below matters more
            pass
        say_failure(f"{label}: internal error: {type(error).__name__}: {error} "
                    f"(traceback in syslog; please report it)")
        return ExitStatus.SOFTWARE


MAX_LINE = 1000  # characters of one stderr or log line; values echoed are cut before that


def one_line(text: str) -> str:
    """`text` made safe for one line of stderr or syslog: bytes that are not UTF-8 (argv
    and interface names can hold any) as \\xNN, other unprintable characters escaped,
    and cut to MAX_LINE characters. Names and values come from users."""
    if not text.isprintable():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_LINE else text[:MAX_LINE - 3] + "..."


def say_failure(message: str) -> None:
    """The one line on stderr. QEMU (or a shell) may have closed stderr or stopped
    reading it: the exit status still tells what happened, and syslog has the rest."""
    import sys

    if sys.stderr is None:
        return
    try:
        sys.stderr.write(f"qemu-ifhooks: {one_line(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
