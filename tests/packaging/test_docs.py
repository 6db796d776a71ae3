"""Every docstring example in the public API runs and prints what it says."""
import doctest
import importlib

import numpy as np
import pytest

MODULES = ["qkernels", "qkernels._elementwise", "qkernels.qparams", "qkernels.ufuncs",
           "qkernels._config", "qkernels.observers", "qkernels.io.arrays", "qkernels.presets",
           "qkernels.qops", "qkernels.linear", "qkernels.transformer"]


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0",
                    reason="the examples show NumPy 2 reprs (np.int32(5)); NumPy 1.x prints 5")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(mod, name, globs={"np": np})
    assert sum(len(t.examples) for t in tests) > 0, f"{name} has no examples"
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


def test_public_functions_have_examples_and_annotations():
    import inspect

    import qkernels as qk

    for name in qk.__all__:
        obj = getattr(qk, name)
        if inspect.isfunction(obj):
            assert ">>>" in (obj.__doc__ or ""), f"{name} has no example"
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, f"{name} return type"
