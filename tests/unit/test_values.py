"""docker_fw.values: the same classes as dataclasses.dataclass makes, built without it."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys

from typing import ClassVar

import pytest

from docker_fw import values


def both(frozen: bool = True):
    """The same class body decorated by dataclasses and by values."""

    def make(decorator, dataclass_field):
        @decorator(frozen=frozen)
        class Point:
            x: int
            y: int = 0
            tags: tuple[str, ...] = dataclass_field(default=())
            seen: list[int] = dataclass_field(default_factory=list, repr=False)

            def total(self) -> int:
                return self.x + self.y

        return Point

    return make(dataclasses.dataclass, dataclasses.field), make(values.dataclass, values.field)


@pytest.mark.parametrize("frozen", [True, False])
def test_init_repr_and_equality_are_the_standard_decorators(frozen):
    std, ours = both(frozen)
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {"x": 1, "tags": ("a",)}), ((1,), {"seen": [3]})]:
        a, b = std(*args, **kwargs), ours(*args, **kwargs)
        assert repr(a).replace("test_values.both.<locals>.make.<locals>.", "") == repr(b).replace(
            "test_values.both.<locals>.make.<locals>.", "")
        assert (a.x, a.y, a.tags, a.seen) == (b.x, b.y, b.tags, b.seen)
    assert ours(1, 2) == ours(x=1, y=2) and ours(1, 2) != ours(1, 3)
    assert ours(1) != std(1)  # another class: not equal, as between two dataclasses
    assert ours(1).seen is not ours(1).seen  # a new list from the factory each time
    assert ours(1, 2).total() == 3
    assert ours.y == 0 and "seen" not in vars(ours)  # class attributes: the defaults, as dataclasses leaves them


def test_the_same_errors_for_bad_arguments():
    std, ours = both()
    for args, kwargs in [((), {}), ((1, 2, (), [], 5), {}), ((1,), {"x": 2}), ((1,), {"z": 2})]:
        with pytest.raises(TypeError):
            std(*args, **kwargs)
        with pytest.raises(TypeError):
            ours(*args, **kwargs)
    with pytest.raises(TypeError, match="non-default argument"):
        @values.dataclass(frozen=True)
        class Bad:
            a: int = 1
            b: int
    with pytest.raises(ValueError, match="mutable default"):
        @values.dataclass(frozen=True)
        class Mutable:
            a: list = []  # noqa: RUF012
    with pytest.raises(TypeError, match="order"):
        values.dataclass(order=True)


def test_frozen_instances_refuse_assignment_and_hash_by_value():
    _, ours = both(frozen=True)
    point = ours(1, 2)
    with pytest.raises(AttributeError):
        point.x = 5
    with pytest.raises(dataclasses.FrozenInstanceError):  # dataclasses is loaded here
        del point.y
    with pytest.raises(AttributeError):
        point.other = 1
    assert (point.x, point.y) == (1, 2)
    pair = values.dataclass(frozen=True)(type("Pair", (), {"__annotations__": {"a": "int", "b": "int"}}))
    assert hash(pair(1, 2)) == hash(pair(1, 2)) and len({pair(1, 2), pair(1, 2), pair(2, 1)}) == 2
    with pytest.raises(TypeError):
        hash(point)  # a list field: unhashable, as with dataclasses


def test_an_unfrozen_class_with_eq_is_unhashable_and_mutable():
    _, ours = both(frozen=False)
    point = ours(1)
    point.x = 4
    assert point.x == 4
    with pytest.raises(TypeError):
        hash(point)


def test_replace_here_and_dataclasses_replace_give_a_checked_copy():
    @values.dataclass(frozen=True)
    class Positive:
        n: int
        label: str = ""

        def __post_init__(self) -> None:
            if self.n <= 0:
                raise ValueError("not positive")

    one = Positive(1, "a")
    assert values.replace(one, n=2) == Positive(2, "a") == dataclasses.replace(one, n=2)
    assert dataclasses.is_dataclass(one)
    assert dataclasses.asdict(one) == {"n": 1, "label": "a"} and len(dataclasses.fields(one)) == 2
    with pytest.raises(ValueError):
        values.replace(one, n=0)  # __post_init__ runs again
    with pytest.raises(TypeError):
        values.replace(object())
    assert values.asdict(one) == {"n": 1, "label": "a"}
    assert [f.name for f in values.fields(one)] == ["n", "label"]


def test_inherited_fields_come_first_and_classvars_are_not_fields():
    @values.dataclass(frozen=True)
    class Base:
        a: int

    @values.dataclass(frozen=True)
    class Child(Base):
        COUNT: ClassVar[int] = 3
        b: int = 2

    assert Child(1) == Child(a=1, b=2) and repr(Child(1)).endswith("Child(a=1, b=2)")
    assert Child.COUNT == 3 and list(Child.__dataclass_fields__) == ["a", "b"]


def test_copies_and_pickles():
    point = Module_Point(1, 2)
    assert copy.copy(point) == point and copy.deepcopy(point) == point
    assert pickle.loads(pickle.dumps(point)) == point


@values.dataclass(frozen=True)
class Module_Point:  # noqa: N801 (pickle needs a module-level class)
    x: int
    y: int = 0


def test_docker_fw_values_loads_neither_dataclasses_nor_typing():
    code = "import sys, docker_fw.values, docker_fw.model; print('dataclasses' in sys.modules, 'typing' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "False"
