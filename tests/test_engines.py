"""Both engines honour one classify contract (``semcat.engines.Classify``); their results agree
(tests/test_spark.py compares the Spark engine's rows with the local engine's predictions)."""
from __future__ import annotations

import inspect

import pytest

from semcat.engines import Classify, local, spark

CONTRACT = list(inspect.signature(Classify.__call__).parameters.values())[1:]  # without self


@pytest.mark.parametrize("engine", [local.classify, spark.classify], ids=["local", "spark"])
def test_engines_take_the_contract_parameters_in_order(engine) -> None:
    params = list(inspect.signature(engine).parameters.values())
    shared, extra = params[:len(CONTRACT)], params[len(CONTRACT):]
    assert [(p.name, p.kind) for p in shared] == [(c.name, c.kind) for c in CONTRACT]
    for p, c in zip(shared, CONTRACT):
        if c.default is not Ellipsis:  # ``...``: the engine's own default
            assert p.default == c.default, f"{engine.__module__}: {p.name}={p.default!r}, contract {c.default!r}"
    # whatever an engine adds can be left out, so a call written to the contract runs on either
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in extra)


def test_the_engines_differ_only_in_the_defaults_the_contract_leaves_open() -> None:
    a, b = (inspect.signature(f).parameters for f in (local.classify, spark.classify))
    differ = {c.name for c in CONTRACT if a[c.name].default != b[c.name].default}
    assert differ == {c.name for c in CONTRACT if c.default is Ellipsis} == {"chunk_size", "store"}


def test_spark_refuses_a_model_in_memory_with_the_reason() -> None:
    """Executors load the model from its file: an in-memory model is refused before Spark starts."""
    import numpy as np

    from semcat.featurespec import FeatureSpec
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel

    rng = np.random.default_rng(0)
    head = SoftmaxHead().fit(rng.normal(size=(6, 1280)).astype(np.float32), ["a", "b"] * 3)
    with pytest.raises(TypeError, match="file path"):
        spark.classify(SemcatModel(FeatureSpec.resolve(), head), [])
