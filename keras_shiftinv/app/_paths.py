"""Output folders of the commands: checked before any work starts.

Training, evaluation and export can run for minutes to hours before they write: a
folder that cannot be written must fail at once, with the option that named it.
"""

import os
import tempfile


def check_writable_dir(path, option):
    """Checks that the folder `path` exists or can be made, and can take files.

    Nothing is created: a missing folder is checked through the nearest folder
    above it that exists (a temporary file is made and deleted there), so an
    error later leaves no empty folder behind.

    Args:
        path: the output folder.
        option: how the user named it, for the message (e.g. "--out / out_dir").

    Raises:
        ValueError: `path`, or a path above it, is a file, or the folder cannot be
            written (read-only, no permission, no such place).
    """
    path = os.path.abspath(os.fspath(path))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"is under a file, {existing!r}"
        raise ValueError(f"The output folder {path!r} ({option}) {where}.")
    try:
        # Permissions alone do not tell (root ignores them; read-only mounts):
        # only writing tells.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"Cannot write to the output folder {path!r} ({option}): {reason} "
            f"in {existing!r}."
        ) from error
