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
        import syslog
        import traceback

        from .log import emit

        for line in traceback.format_exc().splitlines():
            emit(syslog.LOG_DEBUG, f"{label}: {line}")
        if os.environ.get("QEMU_IFHOOKS_DEBUG"):
            traceback.print_exc()
        say_failure(f"{label}: internal error: {type(error).__name__}: {error} "
                    f"(traceback in syslog; please report it)")
        return ExitStatus.SOFTWARE


def one_line(text: str) -> str:
    """Escape what would break the one-line promise (names and values come from users)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def say_failure(message: str) -> None:
    import sys

    print(f"qemu-ifhooks: {one_line(message)}", file=sys.stderr)
