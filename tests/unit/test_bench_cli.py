"""The benchmarks' argument types: a mistyped value is refused by the parser, before any
server or load process starts."""

from __future__ import annotations

import argparse

import pytest

from bench import batching_bench, e2e_bench, pipeline_bench
from bench.cli import listed, one_of, positive


def test_types_read_good_values() -> None:
    assert positive(float)("2.5") == 2.5
    assert positive(int)("3") == 3
    assert listed(positive(float))("2000, 5000,") == [2000.0, 5000.0]
    assert listed(one_of("mqtt", "stream"))("stream,mqtt") == ["stream", "mqtt"]


@pytest.mark.parametrize(
    ("parse", "text", "why"),
    [
        (positive(float), "abc", "not a number: 'abc'"),
        (positive(float), "0", "must be greater than 0: '0'"),
        (positive(float), "nan", "must be greater than 0: 'nan'"),
        (positive(int), "1.5", "not a number: '1.5'"),
        (listed(positive(float)), "100,-5", "must be greater than 0: '-5'"),
        (listed(positive(float)), " , ", "give at least one value"),
        (listed(one_of("fixed", "adaptive")), "fixed,nope", "'nope' is not one of fixed, adaptive"),
    ],
)
def test_types_refuse_bad_values(parse: object, text: str, why: str) -> None:
    assert callable(parse)
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        parse(text)


@pytest.mark.parametrize(
    ("main", "argv", "why"),
    [
        (batching_bench.main, ["--rates", "2000,abc"], "argument --rates: not a number"),
        (batching_bench.main, ["--repeats", "0"], "argument --repeats: must be greater than 0"),
        (pipeline_bench.main, ["--seconds", "-1"], "argument --seconds: must be greater than 0"),
        (pipeline_bench.main, ["--protocols", "4"], "argument --protocols: '4' is not one of"),
        (e2e_bench.main, ["--rates", "0"], "argument --rates: must be greater than 0"),
        (batching_bench.main, ["--sources", "kafka"], "'kafka' is not one of mqtt, stream"),
    ],
)
def test_a_scenario_refuses_a_bad_argument_before_it_starts(
    main: object, argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(main)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert why in capsys.readouterr().err
