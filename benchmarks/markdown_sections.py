"""Named sections of a Markdown file such as BENCHMARKS.md, shared by the benchmark
scripts (bench_layers.py, bench_models.py, reproduce.py).

A section is the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`; a
script replaces only its own sections and leaves the rest of the file as it is. A
section may hold subsections (`reproduce` holds `reproduce-intro`,
`reproduce-quick`, ...).
"""

import os


def markers(name):
    """The (start, end) markers of the section `name`."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section(text, name):
    """The body of the section `name` of `text`, or None."""
    start, end = markers(name)
    if start not in text or end not in text.split(start, 1)[1]:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def replace_section(text, name, body):
    """`text` with the part between `<!-- name:start -->` and `<!-- name:end -->`
    replaced by `body` (appended, with its markers, when there is none yet)."""
    start, end = markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text.split(start, 1)[1]:
        before, rest = text.split(start, 1)
        return before + block + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def replace_subsection(text, parent, name, body, intro=None):
    """`text` with `body` as the subsection `<parent>-<name>` inside the section
    `parent` (and, if given, `intro` as its subsection `<parent>-intro`); the other
    subsections and sections stay."""
    inner = section(text, parent) or ""
    if intro is not None:
        inner = replace_section(inner, f"{parent}-intro", intro)
    return replace_section(
        text, parent, replace_section(inner, f"{parent}-{name}", body)
    )


def write_section(path, name, body, parent=None, intro=None):
    """Puts `body` into the Markdown file `path` (created if missing) as the section
    `name`, or as the subsection `name` of `parent` (see `replace_subsection`)."""
    text = "# Benchmarks\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if parent is None:
        text = replace_section(text, name, body)
    else:
        text = replace_subsection(text, parent, name, body, intro)
    with open(path, "w") as f:
        f.write(text)
