"""How the command line reports an error: one line, `error <file>:<line>: <what> - <what to do>`.

Bad input (a recipe, a source file, a run directory, an option) exits with 2; anything
else is a failure of curate or its environment and exits with 1. `curate --debug ...`
shows the traceback instead. The mapping from exception to line lives here, in one place,
so every command reports the same way.
"""

from __future__ import annotations

import errno

USER_ERROR = 2
FAILURE = 1

# errno values that mean "this path is wrong for what you asked", not "the machine failed".
_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                errno.ENAMETOOLONG}


class UserError(Exception):
    """Bad input found by curate: `where` (file[:line], or an option), what is wrong, what to do."""

    def __init__(self, where: str, what: str, hint: str):
        super().__init__(f"{where}: {what}")
        self.where, self.what, self.hint = where, what, hint


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def describe(error: BaseException) -> tuple[int, list[str]]:
    """(exit code, lines without the `error ` prefix) for an exception that reached the CLI."""
    from pydantic import ValidationError

    from curate.answers.sandbox_box import IsolationUnavailable
    from curate.audit import AuditError
    from curate.core.overrides import OverrideError
    from curate.core.rundir import RunDirError
    from curate.core.yamlsafe import YamlInputError
    from curate.publish.versions import DamagedVersionError
    from curate.recipe import RecipeError
    from curate.review.labelstudio import ReviewFileError
    from curate.sources.readers import SourceError

    if isinstance(error, UserError):
        return USER_ERROR, [f"{one_line(error)} - {error.hint}"]
    if isinstance(error, RecipeError):
        return USER_ERROR, [f"{one_line(p)} - {p.hint or 'fix the recipe; `curate validate RECIPE` checks it'}"
                            for p in error.problems]
    hints = (
        (SourceError, "fix the source file, or the source's `fields:` / `format:` in the recipe"),
        (RunDirError, "pass the directory of a finished run (rerun `curate run RECIPE` to finish it)"),
        (AuditError, "pass a run directory (with run.json) or a published version folder (with lineage.json)"),
        (OverrideError, "write --set FIELD=VALUE, VALUE in YAML"),
        (YamlInputError, "fix the YAML"),
        (DamagedVersionError, "restore the file, or delete the version folder and publish the run again"),
        (ReviewFileError, "export the Label Studio project as JSON (the tasks `curate review` wrote)"),
        (IsolationUnavailable, "install bubblewrap (apt-get install bubblewrap), or set `sandbox: "
                               "unsafe-no-isolation` in the verify config to run model code unisolated"),
    )
    for kind, hint in hints:
        if isinstance(error, kind):
            return USER_ERROR, [f"{one_line(error)} - {hint}"]
    if isinstance(error, ValidationError):
        return USER_ERROR, [f"{validation_line(error)} - check the field names and types"]
    if isinstance(error, OSError) and error.errno in _PATH_ERRNOS:
        where = error.filename if error.filename is not None else "path"
        return USER_ERROR, [f"{where}: {error.strerror or one_line(error)} - check that the path exists and that "
                            f"you may read (or write) it"]
    if isinstance(error, FileNotFoundError):  # e.g. ModelNotFoundError: a message, no errno
        return USER_ERROR, [f"{one_line(error)} - check the name or path"]
    text = one_line(error)[:300] or type(error).__name__
    return FAILURE, [f"{type(error).__name__}: {text} - this is a failure, not bad input; rerun with "
                     f"`curate --debug ...` for the traceback and report it"]


def validation_line(error, prefix: str = "") -> str:
    """The first pydantic error as `prefix.field: message` (unknown fields list the known ones)."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return f"{location or error.title}: {message}{more}"
