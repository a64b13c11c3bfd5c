"""(not implemented yet)"""


def add_arguments(parser):
    pass


def run(args) -> int:
    from chatforge.errors import ChatforgeError

    raise ChatforgeError("chatforge export is not implemented yet", exit_code=1)
