"""netfix.registry.Registry: the one registry style (unknown names list the valid ones; no silent re-registration)."""

import pytest

from netfix.errors import ConfigError, UnknownNameError
from netfix.registry import Registry


def test_register_get_and_list():
    r: Registry[int] = Registry("colour", "--colour")
    r.add("red", 1)
    r.register("blue")(2)
    assert r.get("red") == 1 and r.get("blue") == 2
    assert r.names() == ["blue", "red"] and list(r) == ["blue", "red"] and len(r) == 2
    assert "red" in r and "green" not in r and r.find("green") is None
    assert r.remove("red") and not r.remove("red") and r.names() == ["blue"]


def test_unknown_name_lists_the_valid_ones_and_the_argument():
    r: Registry[int] = Registry("colour", "--colour")
    r.add("red", 1)
    with pytest.raises(UnknownNameError, match=r"--colour: unknown colour 'green'.*'red'"):
        r.get("green")
    with pytest.raises(UnknownNameError, match=r"^paint: unknown colour"):
        r.get("green", "paint")


def test_a_name_is_registered_once_unless_replaced():
    r: Registry[int] = Registry("colour", "--colour")
    r.add("red", 1)
    r.add("red", 1)  # the same entry again is harmless
    with pytest.raises(ConfigError, match="already registered"):
        r.add("red", 2)
    r.add("red", 2, replace=True)
    assert r.get("red") == 2
    with pytest.raises(ConfigError, match="non-empty"):
        r.add("", 3)


def test_an_architecture_can_be_unregistered_but_not_a_builtin_one():
    import netfix
    from torch import nn

    netfix.models.register("reg-test", lambda input_shape, num_classes: nn.Linear(4, num_classes), replace=True,
                           recipe={"lr": 0.01})
    assert "reg-test" in netfix.models.available() and netfix.models.has_recipe("reg-test")
    assert netfix.models.unregister("reg-test") and "reg-test" not in netfix.models.available()
    assert not netfix.models.has_recipe("reg-test")  # its recipe goes with it
    assert not netfix.models.unregister("reg-test")
    with pytest.raises(ConfigError, match="netfix's own"):
        netfix.models.unregister("mlp")
