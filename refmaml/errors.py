"""Exceptions raised by refmaml."""


class ConvergenceError(ValueError):
    """An iterative solver stopped before reaching its tolerance.

    ``residual`` is the residual it reached, ``tolerance`` the one asked for.
    """

    def __init__(self, message, *, residual, tolerance):
        super().__init__(message)
        self.residual = residual
        self.tolerance = tolerance
