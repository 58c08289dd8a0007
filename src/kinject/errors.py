"""One error type for bad input: its message is one line naming the file and what is wrong."""


class KinjectError(Exception):
    """Bad input or configuration. ``str(err)`` is a single line: '<file>: <what is wrong>'."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")
