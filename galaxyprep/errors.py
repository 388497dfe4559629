"""One exception for every input problem a user can fix."""


class InputError(Exception):
    """A problem with the user's input, said in one line that names the file.

    The CLI prints it as `error: <message>` and exits non-zero, never with a
    traceback.
    """

    def __init__(self, path: object, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
