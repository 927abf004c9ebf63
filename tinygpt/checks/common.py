"""What every chapter's checks share: failure messages, the bad-input probe, and was the
code written in the notebook?"""
from __future__ import annotations

import inspect
import sys
import types


def _code_objects(obj):
    """The code objects of a function, or of every method of a class, nested ones included."""
    if isinstance(obj, type):
        for member in vars(obj).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            elif isinstance(member, property):
                yield from (c for f in (member.fget, member.fset) if f for c in _code_objects(f))
                continue
            if inspect.isfunction(member):
                yield from _code_objects(member)
        return
    stack = [obj.__code__] if hasattr(obj, "__code__") else []
    while stack:
        code = stack.pop()
        yield code
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))


def _globals_of(obj) -> dict:
    if isinstance(obj, type):
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)
            if inspect.isfunction(member):
                return member.__globals__
        return {}
    return getattr(obj, "__globals__", {})


def written_here(obj) -> None:
    """Fail unless ``obj`` was written in this notebook, not taken from the course package.

    Importing the reference (``from tinygpt... import train_bpe``), subclassing it, or
    wrapping it in a function written here all fail: a graded unit must be your code.
    Using earlier exercises' reference functions (``merge`` inside ``train_bpe``) is fine.
    """
    name = getattr(obj, "__name__", repr(obj))
    module = getattr(obj, "__module__", None)
    if module != "__main__":
        raise AssertionError(f"{name} comes from {module}, not from this notebook: "
                             "write it here (the reference is for later chapters)")
    if isinstance(obj, type):
        for base in obj.__mro__[1:]:
            if base.__module__.startswith("tinygpt"):
                raise AssertionError(f"{name} inherits from the reference {base.__qualname__}")
    namespace = _globals_of(obj)
    for code in _code_objects(obj):
        for ref in code.co_names:
            value = namespace.get(ref)
            if value is None:
                continue
            home = value if isinstance(value, types.ModuleType) else sys.modules.get(
                getattr(value, "__module__", None) or "")
            if (isinstance(home, types.ModuleType) and home.__name__.startswith("tinygpt.")
                    and hasattr(home, name)):
                raise AssertionError(f"{name} uses {ref!r} from {home.__name__}, the reference "
                                     f"that holds {name}: write {name} yourself")


def mismatch(what: str, given, expected, got) -> AssertionError:
    """An AssertionError that says what was given, what was expected and what came back."""
    def short(x):
        text = repr(x)
        return text if len(text) < 300 else text[:300] + "..."
    return AssertionError(f"{what}\n  given:    {short(given)}\n  expected: {short(expected)}"
                          f"\n  got:      {short(got)}")


def raises_value_error(what: str, call) -> None:
    """Fail unless ``call()`` raises ValueError (bad input is a clear error, never another
    exception and never a result); ``what`` names the call and its bad input."""
    try:
        call()
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - any other error is the finding
        raise AssertionError(f"{what} must raise ValueError, raised {type(err).__name__}: "
                             f"{err}") from None
    raise AssertionError(f"{what} must raise ValueError, it returned")
