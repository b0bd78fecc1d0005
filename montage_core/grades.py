"""Colour grades: the one piece of a timeline that reaches ffmpeg's filter graph, so it is checked.

A timeline may come from someone else (``montage render their-timeline.json``). Its ``grade`` goes
into ``-filter_complex``, where a filter such as ``drawtext=textfile=/etc/hostname`` or ``movie=``
would read any file this user can. So a grade is parsed, not passed through: a chain of colour
filters only (the list below), each option a plain number, word or quoted list of numbers, and no
file at all: segments may render on other machines, and the segment cache key covers the grade's
text, not a file's content (docs/hooks/styles.md, "grade").
"""

from __future__ import annotations

import re
from .errors import UsageError

#: filters that change colours, levels or the look of each frame and read nothing but the frame
COLOUR_FILTERS = frozenset({
    "eq", "curves", "colorbalance", "colorchannelmixer", "colorcontrast", "colorcorrect", "colorlevels",
    "colortemperature", "exposure", "hue", "huesaturation", "selectivecolor", "vibrance", "vignette",
    "monochrome", "grayworld", "lutrgb", "lutyuv", "negate", "unsharp", "gblur", "noise",
})
#: options that would make a filter read or write a file (``curves=plot=`` writes a Gnuplot script)
FILE_OPTIONS = frozenset({"file", "psfile", "textfile", "filename", "f", "plot"})
#: how many unnamed (positional) values a filter may take: ffmpeg gives them to the options in
#: their declared order, and these filters declare a file option after their first few
#: (curves: preset, master, red, green, blue, all, then psfile and plot; selectivecolor: the
#: correction method and nine colour ranges, then psfile)
POSITIONAL_LIMIT = {"curves": 6, "selectivecolor": 10}
#: an option value: numbers, words, expressions of them; spaces and '/' only inside quotes (curves' points)
_VALUE = re.compile(r"^(?:[A-Za-z0-9_.+\-*()]+|'[A-Za-z0-9_.+\-/ ]*')$")
_NAME = re.compile(r"^[a-z0-9_]+$")


def check_grade(grade: str) -> str:
    """``grade`` as it may reach ffmpeg (normalised), or :class:`UsageError` naming what is refused."""
    if not grade:
        return ""
    if any(ch in grade for ch in "[];\\\n\r\0"):
        raise UsageError(f"grade {grade!r}: only a chain of colour filters is allowed (no labels, ';' or escapes)")
    filters = []
    for part in grade.split(","):
        name, _, args = part.strip().partition("=")
        if name not in COLOUR_FILTERS:
            raise UsageError(f"grade filter {name!r} is not allowed (colour filters only: "
                             f"{', '.join(sorted(COLOUR_FILTERS))})")
        options, positional = [], 0
        for option in _split_options(args, grade) if args else []:
            key, equals, value = option.partition("=")
            if not equals:
                key, value = "", option
                positional += 1
                if positional > POSITIONAL_LIMIT.get(name, positional):
                    raise UsageError(f"grade {grade!r}: {name} takes at most {POSITIONAL_LIMIT[name]} unnamed values "
                                     "(the next would be a file); name the options")
            if key and not _NAME.match(key):
                raise UsageError(f"grade {grade!r}: option name {key!r} is not allowed")
            if key in FILE_OPTIONS:
                raise UsageError(f"grade {grade!r}: {name} may not read or write a file ({key}=)")
            if not _VALUE.match(value):
                raise UsageError(f"grade {grade!r}: value {value!r} of {name} is not allowed (numbers and words only)")
            options.append(f"{key}={value}" if key else value)
        filters.append(name + ("=" + ":".join(options) if options else ""))
    return ",".join(filters)


def _split_options(args: str, grade: str) -> list[str]:
    """``a=1:b='0/0 1/1'`` → options, split at ':' outside quotes."""
    options, current, quoted = [], "", False
    for ch in args:
        if ch == "'":
            quoted = not quoted
        if ch == ":" and not quoted:
            options.append(current)
            current = ""
            continue
        current += ch
    if quoted:
        raise UsageError(f"grade {grade!r}: unbalanced quote")
    return [*options, current]
