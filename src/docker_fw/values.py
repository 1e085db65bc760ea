"""A drop-in for ``dataclasses.dataclass`` that costs nothing at start-up.

Every docker-fw run is a new process, and the standard decorator is paid on
each: importing ``dataclasses`` imports ``inspect`` (with ``ast``, ``dis``,
``tokenize``: about 70 million instructions, valgrind, CPython 3.11), and
each class it decorates gets its methods written as source text and
compiled with ``exec()`` (about 4 million each, 25 classes per action).
This one builds the same methods from plain functions over the class's field
list: no import, no compiling.

Used exactly like the standard one, with the subset docker-fw uses::

    from .values import dataclass, field

    @dataclass(frozen=True)
    class RuleSpec:
        owner: str
        proto: str = "tcp"
        filter: tuple[str, ...] = field(default=())

Fields are the class's annotations, in order (those of decorated base
classes first); ``ClassVar`` annotations are not fields.  A class gets
``__init__`` (positional or keyword arguments, defaults, ``default_factory``,
then ``__post_init__``), ``__repr__``, ``__eq__`` (same class, equal fields),
and, when frozen, ``__hash__`` and assignment refused with
``FrozenInstanceError`` (an AttributeError); an unfrozen class with eq is
unhashable, as with the standard decorator.  ``dataclasses.replace`` and
``dataclasses.is_dataclass``, ``fields`` and ``asdict`` work on these classes
too, and ``dataclasses.FrozenInstanceError`` is what a frozen one raises once
dataclasses is loaded; ``replace``, ``fields`` and ``asdict`` here do the
same without importing it.
Not supported (refused, not ignored): ``order``, ``kw_only``, ``slots``,
``InitVar``, ``init=False`` fields.
"""

from __future__ import annotations

import sys
from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: typing alone costs about 40 million instructions
    from typing import Any, Callable, TypeVar

    T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance (as dataclasses.FrozenInstanceError)."""


def _frozen_error(message: str) -> AttributeError:
    """dataclasses' own FrozenInstanceError when the program loaded dataclasses
    (code that catches it imported it), else ours: both are AttributeErrors."""
    standard = sys.modules.get("dataclasses")
    return getattr(standard, "FrozenInstanceError", FrozenInstanceError)(message)


class Field:
    """One field: its name, its default (or factory), whether repr and eq use it.

    ``init`` and ``_field_type`` are what ``dataclasses.replace``, ``fields`` and
    ``asdict`` read: a plain field, as dataclasses marks one, once it is loaded."""

    __slots__ = ("name", "default", "default_factory", "repr", "compare", "init")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True, compare: bool = True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.init = True

    @property
    def _field_type(self) -> object:
        standard = sys.modules.get("dataclasses")  # only code that imported it asks
        return getattr(standard, "_FIELD", None)

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True, compare: bool = True) -> Any:
    """As dataclasses.field (default, default_factory, repr, compare)."""
    return Field(default, default_factory, repr, compare)


FIELDS = "__dataclass_fields__"  # the standard name: dataclasses.replace() reads it


def _is_classvar(annotation: Any) -> bool:
    text = (annotation if isinstance(annotation, str) else repr(annotation)).strip("'\"")
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _fields_of(cls: type) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(getattr(base, FIELDS, {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        if isinstance(annotation, str) and annotation.startswith(("InitVar", "dataclasses.InitVar", "KW_ONLY")):
            raise TypeError(f"{cls.__name__}.{name}: {annotation} is not supported by docker_fw.values")
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"mutable default {type(spec.default)} for field {name} is not allowed: use default_factory")
        spec.name = name
        fields[name] = spec
        # The class attribute is the default, as with dataclasses (none for a factory).
        if spec.default is not MISSING:
            setattr(cls, name, spec.default)
        elif name in cls.__dict__:
            delattr(cls, name)
    seen_default = False
    for spec in fields.values():
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {spec.name!r} follows default argument")
        seen_default = seen_default or has_default
    return fields


def _make_init(cls: type, fields: dict[str, Field]) -> Callable[..., None]:
    names = tuple(fields)
    count = len(names)
    defaults = {n: f.default for n, f in fields.items() if f.default is not MISSING}
    factories = {n: f.default_factory for n, f in fields.items() if f.default_factory is not MISSING}
    post_init = getattr(cls, "__post_init__", None)
    qualname = cls.__qualname__

    field_names = frozenset(names)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = len(args)
        if given == count and not kwargs:  # the common case: one C call
            self.__dict__.update(zip(names, args))
        else:
            if given > count:
                raise TypeError(f"{qualname}.__init__() takes {count + 1} positional arguments but {given + 1} were given")
            values = dict(defaults)
            values.update(zip(names, args))
            if kwargs:
                if not kwargs.keys() <= field_names:
                    unexpected = sorted(kwargs.keys() - field_names)[0]
                    raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {unexpected!r}")
                if given and not kwargs.keys().isdisjoint(names[:given]):
                    twice = sorted(kwargs.keys() & set(names[:given]))[0]
                    raise TypeError(f"{qualname}.__init__() got multiple values for argument {twice!r}")
                values.update(kwargs)
            if len(values) < count:
                for name in names:
                    if name in values:
                        continue
                    if name not in factories:
                        raise TypeError(f"{qualname}.__init__() missing required argument: {name!r}")
                    values[name] = factories[name]()
            self.__dict__.update(values)
        if post_init is not None:
            self.__post_init__()

    __init__.__qualname__ = f"{qualname}.__init__"
    return __init__


def _process(cls: type, frozen: bool, eq: bool, repr_: bool) -> type:
    fields = _fields_of(cls)
    setattr(cls, FIELDS, fields)
    cls.__init__ = _make_init(cls, fields)  # type: ignore[misc]
    shown = tuple(n for n, f in fields.items() if f.repr)
    compared = tuple(n for n, f in fields.items() if f.compare)

    if repr_ and "__repr__" not in cls.__dict__:
        def __repr__(self) -> str:
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
            return f"{type(self).__qualname__}({inner})"

        cls.__repr__ = __repr__  # type: ignore[method-assign]

    # attrgetter: the fields as one tuple, in C (as fast as dataclasses' generated code)
    if len(compared) == 1:
        single = attrgetter(compared[0])
        key = lambda self: (single(self),)  # noqa: E731
    elif compared:
        key = attrgetter(*compared)
    else:
        key = lambda self: ()  # noqa: E731

    if eq and "__eq__" not in cls.__dict__:
        def __eq__(self, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return key(self) == key(other)

        cls.__eq__ = __eq__  # type: ignore[method-assign]

    if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
        if frozen and eq:
            def __hash__(self) -> int:
                return hash(key(self))

            cls.__hash__ = __hash__  # type: ignore[method-assign]
        elif eq:
            cls.__hash__ = None  # type: ignore[assignment]

    if frozen:
        def __setattr__(self, name: str, value: Any) -> None:
            raise _frozen_error(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise _frozen_error(f"cannot delete field {name!r}")

        cls.__setattr__ = __setattr__  # type: ignore[method-assign]
        cls.__delattr__ = __delattr__  # type: ignore[method-assign]
    return cls


def dataclass(cls: type[T] | None = None, /, *, frozen: bool = False, eq: bool = True, repr: bool = True, **unsupported: Any):
    """As dataclasses.dataclass, for frozen (or plain) value classes: see the module's doc."""
    if unsupported:
        raise TypeError(f"docker_fw.values.dataclass does not support {', '.join(sorted(unsupported))}")

    def wrap(klass: type[T]) -> type[T]:
        return _process(klass, frozen, eq, repr)

    return wrap if cls is None else wrap(cls)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of OBJ with CHANGES (as dataclasses.replace; __post_init__ runs again)."""
    fields = getattr(type(obj), FIELDS, None)
    if fields is None:
        raise TypeError("replace() should be called on dataclass instances")
    for name in fields:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)


def asdict(obj: Any) -> dict[str, Any]:
    """The fields of OBJ by name (not recursive: docker-fw's values hold plain data)."""
    return {name: getattr(obj, name) for name in getattr(type(obj), FIELDS)}


def fields(obj_or_class: Any) -> tuple[Field, ...]:
    return tuple(getattr(obj_or_class, FIELDS).values())
