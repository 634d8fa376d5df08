"""The base class of the errors our command-line tools report in one line,
and :func:`first_line`, how they quote an underlying exception."""

__all__ = ['CONFIG_BUILD_ERRORS', 'EcaMmdetError', 'first_line']

# What mmengine's registries raise when a config does not build (unknown
# type, bad or missing argument, failed import in the built class).
CONFIG_BUILD_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    AssertionError,
    ImportError,
    AttributeError,
)


class EcaMmdetError(Exception):
    """A problem with the user's input (config, paths, checkpoints, launch).

    The tools in ``tools/`` print ``error: <message>`` on one line and exit
    with status 1 instead of showing a traceback, so the message must say what
    is wrong, which file or option is at fault and how to fix it.
    """


def first_line(error: BaseException) -> str:
    """The first line of ``str(error)`` (the class name if it is empty), to
    quote an exception from the stack inside a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
