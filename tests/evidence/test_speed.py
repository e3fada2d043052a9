"""A miniature of ``ept-studio bench speed`` so the benchmark keeps working (timings not asserted)."""

from __future__ import annotations

from support import make_tiny_vit

from ept_studio.evidence.speed import (
    bf16_variants,
    default_variants,
    format_speed_table,
    run_speed_bench,
)


def test_speed_bench_runs_every_variant_against_the_floor() -> None:
    rows = run_speed_bench(make_tiny_vit(seed=0), rounds=2, warmup=1, batch_size=2)
    labels = [row.label for row in rows]
    assert labels == [variant.label for variant in default_variants()]
    assert rows[0].ratio_to_floor == 1.0
    assert all(row.median_s > 0 for row in rows)
    by_label = {row.label: row for row in rows}
    # Tiny ViT: 17 tokens, 2 blocks, width 64, head 64 x 4 + 4.
    head = 64 * 4 + 4
    assert by_label["floor (input offset)"].trainable_parameters == 64 + head
    assert by_label["EPT L=100 deep, fast path"].trainable_parameters == 2 * 17 * 100 + head
    assert by_label["VPT-deep L=50"].trainable_parameters == 2 * 50 * 64 + head
    # Gradients through every block must keep more activations than the head-only probe.
    floor = by_label["floor (input offset)"].memory_mib
    assert floor > 10 * by_label["linear (head only)"].memory_mib
    assert by_label["EPT L=100 deep, reference"].memory_mib > floor
    table = format_speed_table("tiny", rows, "saved activations MiB")
    assert table.count("\n") == len(rows) + 3


def test_bf16_rows_time_linear_and_ept_under_autocast_with_fewer_saved_bytes() -> None:
    variants = default_variants() + bf16_variants()
    rows = run_speed_bench(make_tiny_vit(seed=0), variants, rounds=1, warmup=0, batch_size=2)
    by_label = {row.label: row for row in rows}
    fp32, bf16 = by_label["EPT L=100 deep, fast path"], by_label[bf16_variants()[1].label]
    assert bf16.trainable_parameters == fp32.trainable_parameters
    assert 0.3 * fp32.memory_mib < bf16.memory_mib < 0.8 * fp32.memory_mib
    assert bf16.median_s > 0
