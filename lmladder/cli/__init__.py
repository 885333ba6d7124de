"""The `lmladder` command line: a thin client of the library.

Conventions every command follows: results go to stdout (`--json` for machine-readable
output), progress and logs to stderr; bad input or usage is one line `error: ...` with exit
code 2, an internal failure `error: internal error ...` with exit code 1, and a traceback only
with `--debug` or LMLADDER_DEBUG=1. Nothing here imports torch or tokenizers at start-up.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Optional

import importlib

import typer
from typer.core import TyperGroup

from lmladder import __version__
from lmladder.errors import GateFailure, Interrupted, LadderError

_state = {"debug": False}

# Typer builds on click, and recent Typer releases carry their own copy of it: take the
# exception classes from whichever click TyperGroup is built on.
click = importlib.import_module(TyperGroup.__mro__[1].__module__.rsplit(".", 1)[0])
click_exceptions = importlib.import_module(click.__name__ + ".exceptions")
NoArgsIsHelp = getattr(click_exceptions, "NoArgsIsHelpError", ())


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("LMLADDER_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int) -> None:
    message = re.sub(r"\s*\n\s*", " ", message.strip())  # one line, whatever a library's message held
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


class LadderGroup(TyperGroup):
    """Runs commands without click's standalone handling so that every failure becomes the
    one-line `error:` the conventions promise."""

    def invoke(self, ctx: Any) -> Any:
        """A Ctrl-C inside a command becomes an Interrupted error (typer would turn it into a
        silent exit 130): one line that says the command was interrupted."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted (Ctrl-C) before it finished; nothing it was writing was kept "
                              "(outputs are written under a temporary name and renamed when complete)") from None

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        _state["debug"] = False
        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(argv, prog_name=prog_name or "lmladder", complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except NoArgsIsHelp as exc:  # `lmladder corpus` alone shows help
            click.echo(exc.ctx.get_help() if exc.ctx else "", err=False)
            sys.exit(0)
        except click_exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "lmladder"
            _fail(f"{exc.format_message()} (see '{where} --help')", 2)
        except typer.Abort:
            _fail("interrupted", 130)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (LadderError, GateFailure) as exc:
            if debug_enabled():
                raise
            _fail(str(exc), exc.exit_code)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except Exception as exc:  # an internal failure: say so, hide the traceback
            if debug_enabled() or "--debug" in argv:
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)
        if isinstance(result, int) and not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lmladder {__version__}")
        raise typer.Exit()


def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors (also LMLADDER_DEBUG=1)."),
) -> None:
    """lmladder: the climb from counting letters to training a GPT, measured on one scale."""
    _state["debug"] = debug


# command -> (module under lmladder.cli, its attribute, whether it is a group of subcommands)
COMMANDS = {
    "corpus": ("corpus", "app", True), "tokenizer": ("tokenizer", "app", True), "ngram": ("ngram", "app", True),
    "train": ("train", "train", False), "score": ("score", "score", False), "sample": ("sample", "sample", False),
    "bench": ("bench", "bench", False), "tour": ("tour", "tour", False), "compress": ("compress", "compress", False),
    "decompress": ("compress", "decompress", False), "export": ("export", "export", False),
    "scale": ("scale", "scale", False),
}


def make_app(names=None) -> typer.Typer:
    """The command line with the named commands (default: all). main() builds it with only the
    command it is asked to run, so that one command does not import the others (and what they
    import): `lmladder score` starts ~25 ms sooner."""
    made = typer.Typer(
        cls=LadderGroup,
        name="lmladder",
        help="Language-model ladders: letters, words, BPE, an MLP and a GPT, scored on one scale.",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    made.callback()(_root)
    for name in names or COMMANDS:
        module, attribute, group = COMMANDS[name]
        target = getattr(importlib.import_module(f"lmladder.cli.{module}"), attribute)
        if group:
            made.add_typer(target, name=name)
        else:
            made.command(name)(target)
    return made


def __getattr__(name: str) -> Any:
    """`app`: the whole command line (make_app()), made on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "app" not in _made:
        _made["app"] = make_app()
    return _made["app"]


_made: dict[str, typer.Typer] = {}


def main() -> None:
    from lmladder import runtime

    runtime.configure()  # allocator settings, before the first big array (lmladder.runtime)
    runtime.mark("command", first=True)  # the interpreter and the CLI are loaded
    asked = _asked()
    if asked == "train":
        runtime.warm_gpu(sys.argv[1:])
    make_app([asked] if asked in COMMANDS else None)()


def _asked() -> str | None:
    """The command on the command line (its first word that is not an option)."""
    return next((a for a in sys.argv[1:] if not a.startswith("-")), None)


# commands that only read files and print, after which the process may end without the
# interpreter's teardown: it frees every module and object one by one, ~40 ms after
# `lmladder score` (typer alone brings pydantic), an eighth of scoring a 1.8 M-character text
QUICK_EXIT = ("score",)


def _quick_exit() -> bool:
    """A QUICK_EXIT command, or a torchrun `train` process other than rank 0: gloo's threads may
    still let go of a collective's tensors while the interpreter tears down, which aborts the
    process ("terminate called without an active exception", SIGABRT; pytorch/pytorch#179291).
    Rank 0, which writes the run's files, ends as usual."""
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    return _asked() in QUICK_EXIT or (_asked() == "train" and rank != "0" and world.isdigit() and int(world) > 1)


def run() -> None:
    """The `lmladder` program (and `python -m lmladder`): main(), and where _quick_exit says so,
    once it is done and only the main thread is left, the exit handlers, flushed output and
    os._exit with main()'s exit code instead of the teardown."""
    import threading

    if not _quick_exit():
        return main()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if threading.active_count() > 1:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
