"""Flux-style substitution and the variables a cluster must set."""
from __future__ import annotations

from commands.substitute import required_variables, substitute


def test_substitute_values_defaults_and_undefined() -> None:
    text = 'a: "${x}"\nb: "${y:=30m}"\nc: "${z:-fallback}"\nd: "${w}"\ne: "${x:=ignored}"\n'
    out, undefined = substitute(text, {"x": "one"})
    assert out == 'a: "one"\nb: "30m"\nc: "fallback"\nd: "${w}"\ne: "one"\n'
    assert undefined == ["w"]


def test_required_variables_are_those_without_defaults() -> None:
    assert required_variables(['${a} ${b:=1} ${c:-2} ${a}', 'x: ${d}']) == {"a", "d"}
