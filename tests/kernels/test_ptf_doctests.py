"""The docstring examples of the PTF / LayerNorm / io / collect modules run as tests."""
import doctest

import pytest

import qkernels.collect
import qkernels.io
import qkernels.io._atomic
import qkernels.io.cheader
import qkernels.io.quantized
import qkernels.ptf


@pytest.mark.parametrize("mod", [qkernels.ptf, qkernels.io, qkernels.io._atomic,
                                 qkernels.io.cheader, qkernels.io.quantized, qkernels.collect],
                         ids=lambda m: m.__name__)
def test_docstring_examples(mod):
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0
