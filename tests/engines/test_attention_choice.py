"""Attention backends through diffusers' dispatch: checked against SDPA on the same inputs, fastest kept."""

from __future__ import annotations

import pytest

from backend.engines.attention import (
    AttentionBackendResult,
    AttentionShape,
    choose_attention_backend,
    measure_attention_backends,
)


def test_cpu_backends_agree_with_sdpa_and_missing_ones_say_why() -> None:
    shape = AttentionShape(batch=2, tokens=96, heads=2, head_dim=16)
    results = {r.name: r for r in measure_attention_backends(
        shape, device="cpu", dtype="float32", candidates=("native", "_native_math", "flash", "sage"), repeats=2)}
    assert results["native"].usable and results["native"].max_abs_error == 0.0
    math = results["_native_math"]
    assert math.usable and math.relative_mean_error < 1e-5 and math.ms_per_call > 0
    for missing in ("flash", "sage"):  # no flash-attn / sageattention here: unusable, with the reason
        assert not results[missing].usable and "not usable" in results[missing].reason


def test_a_backend_that_differs_from_sdpa_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers.models.attention_dispatch as dispatch

    real = dispatch.dispatch_attention_fn

    def wrong_math(query, key, value, *args, backend=None, **kwargs):  # noqa: ANN001 - fault injection
        out = real(query, key, value, *args, backend=backend, **kwargs)
        return out * 1.5 if str(getattr(backend, "value", backend)) == "_native_math" else out

    monkeypatch.setattr(dispatch, "dispatch_attention_fn", wrong_math)
    results = measure_attention_backends(AttentionShape(1, 64, 2, 16), candidates=("native", "_native_math"),
                                         repeats=1)
    by_name = {r.name: r for r in results}
    assert not by_name["_native_math"].usable and "differs from SDPA" in by_name["_native_math"].reason
    assert choose_attention_backend(results) == "native"


def test_the_fastest_usable_backend_wins() -> None:
    results = [AttentionBackendResult("native", True, 9.0), AttentionBackendResult("_native_cudnn", True, 4.0),
               AttentionBackendResult("sage", False, 1.0, reason="differs"), AttentionBackendResult("flash", False)]
    assert choose_attention_backend(results) == "_native_cudnn"
    assert choose_attention_backend([]) == "native"


def test_wan_token_count() -> None:
    assert AttentionShape.for_wan(frames=81, height=512, width=512).tokens == 21 * 32 * 32 == 21_504
