"""The base class of the errors our command-line tools report in one line."""


class EcaMmdetError(Exception):
    """A problem with the user's input (config, paths, checkpoints, launch).

    The tools in ``tools/`` print ``error: <message>`` on one line and exit
    with status 1 instead of showing a traceback, so the message must say what
    is wrong, which file or option is at fault and how to fix it.
    """
