"""Import the app named by --app MODULE:CALLABLE."""
import importlib
import traceback


class LoadError(Exception):
    """The app cannot be loaded; the message says why, in one line."""

    def __init__(self, message, trace=""):
        super().__init__(message)
        self.trace = trace


def load(spec):
    """Return (app, canonical spec). MODULE alone means MODULE:application."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "application"
    if not module_name:
        raise LoadError("invalid --app %r: want MODULE:CALLABLE" % (spec,))
    try:
        obj = importlib.import_module(module_name)
    except BaseException as exc:  # SyntaxError, SystemExit at import too
        raise LoadError("cannot import module %r: %s: %s" % (module_name, type(exc).__name__, exc),
                        "".join(traceback.format_exception(exc))) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError("module %r has no attribute %r" % (module_name, attr)) from None
    if not callable(obj):
        raise LoadError("%s:%s is not callable (it is a %s)" % (module_name, attr, type(obj).__name__))
    return obj, "%s:%s" % (module_name, attr)
